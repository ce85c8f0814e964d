// pixel_values: decode + resize + rescale + normalise against transformers 5.23 (PIL backend).
import Foundation
import Testing
@testable import PaliImage
import PaliWeights

@Suite struct PreprocessTests {
    /// Every image at every golden size: the 8-bit resized image is Pillow's, and pixel_values
    /// equal transformers' (reconstructed from that image; the oracle asserts the reconstruction
    /// is bit-identical to transformers' float32 output).
    @Test(arguments: ResizeCase.all)
    func pixelValuesMatchTransformers(_ c: ResizeCase) throws {
        let entry = Manifest.shared.image(c.name)
        let preprocessor = ImagePreprocessor(configuration: .siglip(size: c.size))
        let decoded = try ImageDecoder().decode(contentsOf: fixtureRoot.appendingPathComponent(entry.file))
        let resized = preprocessor.resized(decoded)
        let golden = Goldens.shared.image("resized.\(c.name).\(c.size)")
        let diff = byteDifference(resized.pixels, golden.pixels)
        #expect(diff.count == 0, "resized: \(diff.count) bytes differ, max \(diff.max)")
        let values = preprocessor.pixelValues(decoded)
        #expect(values.count == 3 * c.size * c.size)
        let error = maxAbsoluteError(values, transformersFormula(golden))
        #expect(error <= 1e-6, "max |error| \(error)")
    }

    /// The stored float32 outputs of transformers itself, default and CLIP mean/std.
    @Test func fullFloatGoldens() throws {
        var checked = 0
        for entry in Manifest.shared.images {
            for size in entry.pixelValues {
                let expected = Goldens.shared.f32("pixel_values.\(entry.name).\(size)")
                #expect(expected.shape == [3, size, size])
                let ours = try ImagePreprocessor(configuration: .siglip(size: size))
                    .pixelValues(contentsOf: fixtureRoot.appendingPathComponent(entry.file))
                let error = maxAbsoluteError(ours, expected.values)
                #expect(error == 0, "\(entry.name)@\(size): max |error| \(error)")
                checked += 1
            }
        }
        for n in Manifest.shared.normalization {
            let entry = Manifest.shared.image(n.image)
            var config = ImageProcessorConfiguration.siglip(size: n.size)
            config.imageMean = n.imageMean
            config.imageStd = n.imageStd
            let ours = try ImagePreprocessor(configuration: config)
                .pixelValues(contentsOf: fixtureRoot.appendingPathComponent(entry.file))
            let error = maxAbsoluteError(ours, Goldens.shared.f32(n.tensor).values)
            #expect(error == 0, "\(n.tensor): max |error| \(error)")
            checked += 1
        }
        #expect(checked >= 7)
    }

    @Test func rescaleAndNormaliseFlags() {
        let image = RGBImage(width: 1, height: 1, pixels: [0, 128, 255])
        var config = ImageProcessorConfiguration.siglip(size: 1)
        #expect(ImagePreprocessor(configuration: config).pixelValues(image) == [-1, Float(Double(128) / 255) * 2 - 1, 1])
        config.doNormalize = false
        #expect(ImagePreprocessor(configuration: config).pixelValues(image) == [0, Float(128.0 / 255.0), 1])
        config.doRescale = false
        #expect(ImagePreprocessor(configuration: config).pixelValues(image) == [0, 128, 255])
    }

    /// The safetensors file the CLI writes holds exactly pixel_values [3, N, N].
    @Test func safetensorsRoundTrip() throws {
        let entry = Manifest.shared.image("jpeg_420_baseline")
        let values = try ImagePreprocessor(configuration: .siglip(size: 56))
            .pixelValues(contentsOf: fixtureRoot.appendingPathComponent(entry.file))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("pali-image-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafetensorsWriter.write([.f32("pixel_values", shape: [3, 56, 56], values)], to: url)
        let read = try Goldens(url: url).f32("pixel_values")
        #expect(read.shape == [3, 56, 56])
        #expect(read.values == Goldens.shared.f32("pixel_values.jpeg_420_baseline.56").values)
    }
}
