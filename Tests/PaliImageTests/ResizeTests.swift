// Resizing: Pillow 13.0 bicubic, bit-exact; fast path == reference path.
import Foundation
import Testing
@testable import PaliImage

struct ResizeCase: Sendable, CustomTestStringConvertible {
    var name: String
    var size: Int
    var testDescription: String { "\(name) -> \(size)x\(size)" }

    static let all: [ResizeCase] = Manifest.shared.images.flatMap { image in
        image.sizes.map { ResizeCase(name: image.name, size: $0) }
    }
}

@Suite struct ResizeTests {
    /// Resizing Pillow's own decoded image (decoding is tested separately) gives Pillow's bytes.
    @Test(arguments: ResizeCase.all)
    func resizeEqualsPillow(_ c: ResizeCase) {
        let source = Goldens.shared.image("decoded.\(c.name)")
        let expected = Goldens.shared.image("resized.\(c.name).\(c.size)")
        let fast = PillowResize.bicubic(source, width: c.size, height: c.size)
        let diff = byteDifference(fast.pixels, expected.pixels)
        #expect(diff.count == 0, "fast: \(diff.count) bytes differ, max \(diff.max)")
        let reference = PillowResize.bicubicReference(source, width: c.size, height: c.size)
        #expect(reference == expected, "reference path differs from Pillow")
    }

    /// Pillow's own resizes of random images to random shapes (both pass orders, skipped axes).
    @Test func randomShapesEqualPillow() {
        var mismatches = 0
        for c in Manifest.shared.randomResizes {
            let source = Goldens.shared.image("random.\(c.index).in")
            let expected = Goldens.shared.image("random.\(c.index).out")
            #expect(PillowResize.verticalFirst(inWidth: source.width, inHeight: source.height,
                                               outWidth: c.outWidth, outHeight: c.outHeight) == c.verticalFirst)
            let ours = PillowResize.bicubic(source, width: c.outWidth, height: c.outHeight)
            if ours != expected {
                mismatches += 1
                Issue.record("random \(c.index): \(source.width)x\(source.height) -> \(c.outWidth)x\(c.outHeight) differs")
            }
            #expect(PillowResize.bicubicReference(source, width: c.outWidth, height: c.outHeight) == expected)
        }
        #expect(mismatches == 0 && Manifest.shared.randomResizes.count == 120)
    }

    @Test func fastEqualsReferenceOnRandomShapes() {
        var rng = SeededRandom(seed: 42)
        var cases: [(Int, Int, Int, Int)] = []
        for _ in 0..<300 {
            cases.append((Int.random(in: 1...70, using: &rng), Int.random(in: 1...70, using: &rng),
                          Int.random(in: 1...70, using: &rng), Int.random(in: 1...70, using: &rng)))
        }
        // One axis unchanged, extreme ratios, large kernels.
        cases += [(50, 30, 50, 7), (30, 50, 7, 50), (1, 1, 9, 4), (400, 3, 5, 3), (3, 400, 3, 9),
                  (513, 301, 37, 29), (64, 64, 224, 224), (17, 200, 224, 224), (200, 17, 13, 13)]
        var mismatches = 0
        for (w, h, ow, oh) in cases {
            let pixels = (0..<(w * h * 3)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let image = RGBImage(width: w, height: h, pixels: pixels)
            let fast = PillowResize.bicubic(image, width: ow, height: oh)
            let slow = PillowResize.bicubicReference(image, width: ow, height: oh)
            if fast != slow {
                mismatches += 1
                let d = byteDifference(fast.pixels, slow.pixels)
                Issue.record("\(w)x\(h) -> \(ow)x\(oh): \(d.count) bytes differ, max \(d.max)")
            }
        }
        #expect(mismatches == 0)
    }

    @Test func sameSizeIsACopy() {
        var rng = SeededRandom(seed: 7)
        let image = RGBImage(width: 9, height: 5, pixels: (0..<135).map { _ in UInt8.random(in: 0...255, using: &rng) })
        #expect(PillowResize.bicubic(image, width: 9, height: 5) == image)
    }

    /// Pillow 13.0: vertical pass first iff (inH - outH) > 0 && (inH - outH) > 2 (inW - outW).
    @Test func passOrderRule() {
        #expect(PillowResize.verticalFirst(inWidth: 40, inHeight: 300, outWidth: 56, outHeight: 56))
        #expect(!PillowResize.verticalFirst(inWidth: 300, inHeight: 40, outWidth: 56, outHeight: 56))
        #expect(!PillowResize.verticalFirst(inWidth: 64, inHeight: 64, outWidth: 224, outHeight: 224))
        #expect(!PillowResize.verticalFirst(inWidth: 100, inHeight: 100, outWidth: 50, outHeight: 50))
        #expect(PillowResize.verticalFirst(inWidth: 100, inHeight: 101, outWidth: 100, outHeight: 50))
        #expect(!PillowResize.verticalFirst(inWidth: 110, inHeight: 120, outWidth: 100, outHeight: 100))  // 20 == 2*10
        #expect(PillowResize.verticalFirst(inWidth: 110, inHeight: 121, outWidth: 100, outHeight: 100))
    }

    /// Integer weights of every output position sum to about 2^22 (normalised kernel).
    @Test func coefficientsAreNormalised() {
        for (inSize, outSize) in [(37, 14), (14, 224), (300, 97), (1, 5)] {
            let c = AxisCoefficients(inSize: inSize, outSize: outSize)
            for o in 0..<outSize {
                let sum = (0..<c.count[o]).reduce(0) { $0 + Int(c.weights[o * c.ksize + $1]) }
                #expect(abs(sum - (1 << 22)) <= c.count[o], "\(inSize)->\(outSize) at \(o): \(sum)")
            }
        }
    }
}
