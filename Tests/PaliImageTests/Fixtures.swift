// Test support: the fixtures and goldens made by Tests/Oracle/make_image_goldens.py.
import Foundation
import PaliTensor
@testable import PaliImage

/// Tests/Fixtures/images, located from this file.
let fixtureRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/images")

/// goldens.json, decoded.
struct Manifest: Decodable, Sendable {
    struct Image: Decodable, Sendable {
        var name: String
        var file: String
        var pillowMode: String
        var width: Int
        var height: Int
        var sizes: [Int]
        var note: String
        var pixelValues: [Int]
        enum CodingKeys: String, CodingKey {
            case name, file, width, height, sizes, note
            case pillowMode = "pillow_mode"
            case pixelValues = "pixel_values"
        }
    }
    struct Normalization: Decodable, Sendable {
        var image: String
        var size: Int
        var imageMean: [Double]
        var imageStd: [Double]
        var tensor: String
        enum CodingKeys: String, CodingKey {
            case image, size, tensor
            case imageMean = "image_mean"
            case imageStd = "image_std"
        }
    }
    struct ErrorCase: Decodable, Sendable {
        var file: String
        var expect: String
        var note: String
    }
    struct ConfigCase: Decodable, Sendable {
        struct Expect: Decodable, Sendable {
            var height: Int
            var width: Int
            var imageMean: [Double]
            var imageStd: [Double]
            var rescaleFactor: Double
            var resample: Int
            enum CodingKeys: String, CodingKey {
                case height, width, resample
                case imageMean = "image_mean"
                case imageStd = "image_std"
                case rescaleFactor = "rescale_factor"
            }
        }
        var directory: String
        var expect: Expect?
        var error: String?
    }
    struct RandomResize: Decodable, Sendable {
        var index: Int
        var outWidth: Int
        var outHeight: Int
        var verticalFirst: Bool
        enum CodingKeys: String, CodingKey {
            case index
            case outWidth = "out_width"
            case outHeight = "out_height"
            case verticalFirst = "vertical_first"
        }
    }
    var images: [Image]
    var normalization: [Normalization]
    var errors: [ErrorCase]
    var configs: [ConfigCase]
    var randomResizes: [RandomResize]
    enum CodingKeys: String, CodingKey {
        case images, normalization, errors, configs
        case randomResizes = "random_resizes"
    }

    static let shared: Manifest = {
        let data = try! Data(contentsOf: fixtureRoot.appendingPathComponent("goldens.json"))
        return try! JSONDecoder().decode(Manifest.self, from: data)
    }()

    func image(_ name: String) -> Image { images.first { $0.name == name }! }
}

/// A minimal safetensors reader for the goldens (U8 and F32 tensors).
struct Goldens: Sendable {
    struct Entry: Sendable { var dtype: String; var shape: [Int]; var range: Range<Int> }
    let entries: [String: Entry]
    let data: [UInt8]
    let dataStart: Int

    static let shared: Goldens = try! Goldens(url: fixtureRoot.appendingPathComponent("goldens.safetensors"))

    init(url: URL) throws {
        let bytes = [UInt8](try Data(contentsOf: url))
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let json = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as! [String: Any]
        var entries: [String: Entry] = [:]
        for (name, value) in json where name != "__metadata__" {
            let info = value as! [String: Any]
            let offsets = info["data_offsets"] as! [Int]
            entries[name] = Entry(dtype: info["dtype"] as! String, shape: info["shape"] as! [Int],
                                  range: offsets[0]..<offsets[1])
        }
        self.entries = entries
        self.data = bytes
        self.dataStart = 8 + headerLength
    }

    func u8(_ name: String) -> (shape: [Int], values: [UInt8]) {
        let e = entries[name]!
        precondition(e.dtype == "U8", "\(name) is \(e.dtype)")
        return (e.shape, Array(data[(dataStart + e.range.lowerBound)..<(dataStart + e.range.upperBound)]))
    }

    func f32(_ name: String) -> (shape: [Int], values: [Float]) {
        let e = entries[name]!
        precondition(e.dtype == "F32", "\(name) is \(e.dtype)")
        let bytes = data[(dataStart + e.range.lowerBound)..<(dataStart + e.range.upperBound)]
        let values = bytes.withUnsafeBytes { raw in
            (0..<(bytes.count / 4)).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
        }
        return (e.shape, values)
    }

    /// An [H, W, 3] U8 tensor as an RGBImage.
    func image(_ name: String) -> RGBImage {
        let (shape, values) = u8(name)
        return RGBImage(width: shape[1], height: shape[0], pixels: values)
    }
}

/// Deterministic generator for test data.
typealias SeededRandom = SplitMix64

/// Number of differing bytes and the largest absolute difference.
func byteDifference(_ a: [UInt8], _ b: [UInt8]) -> (count: Int, max: Int) {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    var count = 0, largest = 0
    for i in a.indices where a[i] != b[i] {
        count += 1
        largest = max(largest, abs(Int(a[i]) - Int(b[i])))
    }
    return (count, largest)
}

func maxAbsoluteError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m
}

/// transformers' arithmetic written out independently of ImagePreprocessor's lookup table:
/// f32(u8 * f64 rescale), then (x - f32 mean) / f32 std, HWC -> CHW.
func transformersFormula(_ image: RGBImage, mean: [Double] = [0.5, 0.5, 0.5], std: [Double] = [0.5, 0.5, 0.5],
                         rescale: Double = 1.0 / 255.0) -> [Float] {
    let plane = image.width * image.height
    var out = [Float](repeating: 0, count: 3 * plane)
    for i in 0..<plane {
        for c in 0..<3 {
            let x = Float(Double(image.pixels[i * 3 + c]) * rescale)
            out[c * plane + i] = (x - Float(mean[c])) / Float(std[c])
        }
    }
    return out
}
