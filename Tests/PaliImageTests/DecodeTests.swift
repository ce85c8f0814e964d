// Decoding: every fixture decodes to exactly Pillow 13's RGB (after transformers' convert_to_rgb).
import Foundation
import Testing
@testable import PaliImage

@Suite struct DecodeTests {
    @Test(arguments: Manifest.shared.images.map(\.name))
    func decodedEqualsPillow(name: String) throws {
        let entry = Manifest.shared.image(name)
        let url = fixtureRoot.appendingPathComponent(entry.file)
        let ours = try ImageDecoder().decode(contentsOf: url)
        let pillow = Goldens.shared.image("decoded.\(name)")
        #expect(ours.width == entry.width && ours.height == entry.height)
        let diff = byteDifference(ours.pixels, pillow.pixels)
        #expect(diff.count == 0, "\(name) (\(entry.note)): \(diff.count) bytes differ, max \(diff.max)")
    }

    @Test(arguments: Manifest.shared.images.map(\.name))
    func headerMatchesPillowMode(name: String) throws {
        let entry = Manifest.shared.image(name)
        let header = try ImageDecoder().header(contentsOf: fixtureRoot.appendingPathComponent(entry.file))
        #expect(header.pillowMode == entry.pillowMode)
        #expect(header.width == entry.width && header.height == entry.height)
        #expect(header.format == (entry.file.hasSuffix(".jpg") ? .jpeg : .png))
    }

    @Test func decodeFromMemoryEqualsDecodeFromFile() throws {
        let entry = Manifest.shared.image("png_rgba8")
        let url = fixtureRoot.appendingPathComponent(entry.file)
        let bytes = [UInt8](try Data(contentsOf: url))
        #expect(try ImageDecoder().decode(data: bytes, name: "memory") == ImageDecoder().decode(contentsOf: url))
    }

    /// Pillow's alpha_composite onto white (AlphaComposite.c), spot values computed by hand.
    @Test func compositeOnWhiteTable() {
        let table = PillowConversion.compositeOnWhite
        #expect(table[0 << 8 | 17] == 255)      // fully transparent -> white
        #expect(table[255 << 8 | 17] == 17)     // opaque -> unchanged
        #expect(table[128 << 8 | 40] == 147)    // (40*128 + 255*127)*128 -> 147
        for v in 0..<256 { #expect(table[255 << 8 | v] == UInt8(v)) }
    }

    @Test func concurrentDecodesAgree() async throws {
        let url = fixtureRoot.appendingPathComponent(Manifest.shared.image("jpeg_420_progressive").file)
        let expected = try ImageDecoder().decode(contentsOf: url)
        try await withThrowingTaskGroup(of: RGBImage.self) { group in
            for _ in 0..<8 { group.addTask { try ImageDecoder().decode(contentsOf: url) } }
            for try await image in group { #expect(image == expected) }
        }
    }
}
