// pixel_values for one image, as transformers 5.23's SiglipImageProcessor (PIL backend) makes them:
// RGB (ImageDecoder) -> PIL bicubic resize to H x W (PillowResize) -> rescale -> normalize -> CHW.
//   rescale:   x = Float32(Float64(u8) * rescale_factor)         (image_transforms.rescale)
//   normalize: x = (x - Float32(mean[c])) / Float32(std[c])      (float32 arithmetic, normalize)
// Both depend only on (channel, u8 value), so they are applied through a 3 x 256 lookup table
// holding exactly those float32 results.
import Foundation

public struct ImagePreprocessor: Sendable {
    public let configuration: ImageProcessorConfiguration
    /// `table[c * 256 + v]`: the output value of byte v in channel c.
    private let table: [Float]

    /// `configuration` must be valid (`validate(path:)`; `load` and `.siglip` always are).
    public init(configuration: ImageProcessorConfiguration) {
        precondition(configuration.imageMean.count == 3 && configuration.imageStd.count == 3,
                     "image_mean and image_std need 3 values each")
        precondition(configuration.size.height > 0 && configuration.size.width > 0, "size must be positive")
        self.configuration = configuration
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            let mean = Float(configuration.imageMean[c]), std = Float(configuration.imageStd[c])
            for v in 0..<256 {
                var x = configuration.doRescale ? Float(Double(v) * configuration.rescaleFactor) : Float(v)
                if configuration.doNormalize { x = (x - mean) / std }
                table[c * 256 + v] = x
            }
        }
        self.table = table
    }

    /// Output height and width.
    public var outputSize: (height: Int, width: Int) { (configuration.size.height, configuration.size.width) }

    /// The resized 8-bit image (Pillow bicubic), before rescale and normalisation.
    public func resized(_ image: RGBImage) -> RGBImage {
        PillowResize.bicubic(image, width: configuration.size.width, height: configuration.size.height)
    }

    /// `pixel_values` of one image, shape [3, H, W] (CHW, RGB), row-major.
    public func pixelValues(_ image: RGBImage) -> [Float] {
        normalized(resized(image))
    }

    /// Decodes a file and returns its `pixel_values`, [3, H, W].
    public func pixelValues(contentsOf url: URL, decoder: ImageDecoder = ImageDecoder()) throws -> [Float] {
        pixelValues(try decoder.decode(contentsOf: url))
    }

    /// Rescale + normalise + HWC -> CHW of an image already at its final size.
    public func normalized(_ image: RGBImage) -> [Float] {
        let plane = image.width * image.height
        return [Float](unsafeUninitializedCapacity: 3 * plane) { out, initialized in
            image.pixels.withUnsafeBufferPointer { src in
                table.withUnsafeBufferPointer { table in
                    for c in 0..<3 {
                        let lut = table.baseAddress! + c * 256
                        let dst = out.baseAddress! + c * plane
                        for i in 0..<plane { dst[i] = lut[Int(src[i * 3 + c])] }
                    }
                }
            }
            initialized = 3 * plane
        }
    }
}
