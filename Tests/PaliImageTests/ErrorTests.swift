// Bad inputs: truncated, corrupt, oversized, not images. Each is an ImageError naming the file.
import Foundation
import Testing
@testable import PaliImage

@Suite struct ErrorTests {
    @Test(arguments: Manifest.shared.errors.map(\.file))
    func badFileThrowsExpectedError(file: String) {
        let errorCase = Manifest.shared.errors.first { $0.file == file }!
        let url = fixtureRoot.appendingPathComponent(file)
        do {
            let image = try ImageDecoder().decode(contentsOf: url)
            Issue.record("\(file) (\(errorCase.note)) decoded to \(image.width)x\(image.height)")
        } catch let error as ImageError {
            #expect(kind(error) == errorCase.expect, "\(file): \(error)")
            #expect(error.path == url.path)
            #expect(error.description.contains(url.lastPathComponent))
        } catch {
            Issue.record("\(file): unexpected error type \(error)")
        }
    }

    @Test func budgetIsCheckedBeforeDecoding() throws {
        let entry = Manifest.shared.image("jpeg_422_baseline")  // 64 x 48 = 3072 pixels
        let url = fixtureRoot.appendingPathComponent(entry.file)
        #expect(throws: ImageError.tooLarge(path: url.path, width: 64, height: 48, maxPixels: 3071)) {
            try ImageDecoder(maxPixels: 3071).decode(contentsOf: url)
        }
        #expect(try ImageDecoder(maxPixels: 3072).decode(contentsOf: url).width == 64)
        // The oversized header fixtures pass the header read with a big enough budget but then fail.
        let huge = fixtureRoot.appendingPathComponent("bad/huge.png")
        #expect(try ImageDecoder().header(contentsOf: huge).pixelCount == 3_600_000_000)
    }

    @Test func missingFileIsUnreadable() {
        let url = fixtureRoot.appendingPathComponent("does-not-exist.png")
        #expect {
            try ImageDecoder().decode(contentsOf: url)
        } throws: { error in
            guard case ImageError.unreadable(let path, _) = error else { return false }
            return path == url.path
        }
    }

    /// Every prefix of a file fails cleanly (no crash, no longjmp through Swift), except PNG
    /// prefixes that hold all the image data (Pillow does not need IEND either): those decode to
    /// the full image. A JPEG prefix always fails (Pillow: "image file is truncated").
    @Test(arguments: ["jpeg_422_progressive", "jpeg_420_baseline", "png_rgba16_interlaced", "png_palette8_trns",
                      "jpeg_ycck"])
    func everyPrefixFailsCleanly(name: String) throws {
        let url = fixtureRoot.appendingPathComponent(Manifest.shared.image(name).file)
        let bytes = [UInt8](try Data(contentsOf: url))
        let full = try ImageDecoder().decode(contentsOf: url)
        let step = max(1, bytes.count / 150)
        for length in Array(stride(from: 0, to: bytes.count, by: step)) + Array(max(0, bytes.count - 20)..<bytes.count) {
            do {
                let image = try ImageDecoder().decode(data: Array(bytes[..<length]), name: "\(name)[..<\(length)]")
                #expect(url.pathExtension == "png" && image == full, "\(name) prefix \(length) decoded")
            } catch let error as ImageError {
                #expect(error.path == "\(name)[..<\(length)]")
            }
        }
    }

    /// Random byte flips either decode to an image of the declared size or throw; never crash.
    @Test func randomCorruptionNeverCrashes() throws {
        var rng = SeededRandom(seed: 99)
        for name in ["jpeg_420_baseline", "jpeg_444_progressive", "png_rgb8_interlaced", "png_gray16"] {
            let bytes = [UInt8](try Data(contentsOf: fixtureRoot.appendingPathComponent(Manifest.shared.image(name).file)))
            for trial in 0..<60 {
                var corrupted = bytes
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    corrupted[Int.random(in: 2..<corrupted.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                if let image = try? ImageDecoder(maxPixels: 1 << 20).decode(data: corrupted, name: "\(name)#\(trial)") {
                    #expect(image.pixels.count == image.width * image.height * 3)
                }
            }
        }
    }

    func kind(_ error: ImageError) -> String {
        switch error {
        case .unreadable: return "unreadable"
        case .unsupportedFormat: return "unsupportedFormat"
        case .tooLarge: return "tooLarge"
        case .truncated: return "truncated"
        case .corrupt: return "corrupt"
        case .unsupportedContent: return "unsupportedContent"
        case .invalidConfiguration: return "invalidConfiguration"
        }
    }
}
