// Reading the image processor configuration of a model directory, as transformers 5.23 does.
import Foundation
import Testing
@testable import PaliImage

@Suite struct ConfigurationTests {
    @Test(arguments: Manifest.shared.configs.map(\.directory))
    func loadsLikeTransformers(directory: String) throws {
        let c = Manifest.shared.configs.first { $0.directory == directory }!
        let url = fixtureRoot.appendingPathComponent(directory)
        if let expect = c.expect {
            let config = try ImageProcessorConfiguration.load(modelDirectory: url)
            #expect(config.size == .init(height: expect.height, width: expect.width))
            #expect(config.imageMean == expect.imageMean)
            #expect(config.imageStd == expect.imageStd)
            #expect(config.rescaleFactor == expect.rescaleFactor)
            #expect(config.resample == expect.resample)
        } else {
            #expect(throws: ImageError.self) { try ImageProcessorConfiguration.load(modelDirectory: url) }
        }
    }

    @Test func scalarMeanAndDefaults() throws {
        let json = #"{"image_mean": 0.25, "image_std": 2, "size": {"height": 32, "width": 16}}"#
        let config = try JSONDecoder().decode(ImageProcessorConfiguration.self, from: Data(json.utf8))
        #expect(config.imageMean == [0.25, 0.25, 0.25] && config.imageStd == [2, 2, 2])
        #expect(config.size == .init(height: 32, width: 16))
        #expect(config.rescaleFactor == 1.0 / 255.0 && config.resample == 3 && config.doConvertRGB)
    }

    @Test func rejectsUnsupportedSettings() {
        var config = ImageProcessorConfiguration.siglip(size: 224)
        config.resample = 2
        #expect(throws: ImageError.self) { try config.validate(path: "x") }
        config = .siglip(size: 224)
        config.doResize = false
        #expect(throws: ImageError.self) { try config.validate(path: "x") }
        config = .siglip(size: 224)
        config.imageStd = [0.5, 0, 0.5]
        #expect(throws: ImageError.self) { try config.validate(path: "x") }
    }
}
