// The VQ-VAE mask decoder: im2col/GEMM convolutions against direct loops on random shapes, the whole
// decoder against a direct-loop decoder, checked loading, and the PyTorch goldens of
// Tests/Oracle/make_vqvae_goldens.py (random weights) within 1e-5 relative.
import Foundation
import PaliGeneration
import PaliModels
import PaliTensor
import PaliWeights
import Testing

/// Direct-loop convolutions in Double, channels-first (PyTorch's own layout): obviously PyTorch's
/// definitions, nothing shared with the GEMM code.
enum DirectConv {
    /// x [C][H][W], weight [O, C, k, k] → [O][Ho][Wo], stride 1.
    static func conv2d(_ x: [[[Double]]], weight: Tensor, bias: Tensor, padding p: Int) -> [[[Double]]] {
        let o = weight.shape[0], c = weight.shape[1], k = weight.shape[2]
        let h = x[0].count, w = x[0][0].count
        let ho = h + 2 * p - k + 1, wo = w + 2 * p - k + 1
        var y = [[[Double]]](repeating: [[Double]](repeating: [Double](repeating: 0, count: wo), count: ho), count: o)
        for co in 0..<o {
            for oy in 0..<ho {
                for ox in 0..<wo {
                    var s = Double(bias.data[co])
                    for ci in 0..<c {
                        for ky in 0..<k {
                            for kx in 0..<k {
                                let iy = oy - p + ky, ix = ox - p + kx
                                if iy < 0 || iy >= h || ix < 0 || ix >= w { continue }
                                s += x[ci][iy][ix] * Double(weight.data[((co * c + ci) * k + ky) * k + kx])
                            }
                        }
                    }
                    y[co][oy][ox] = s
                }
            }
        }
        return y
    }

    /// x [C][H][W], weight [C, O, k, k] → [O][Ho][Wo]: y[o][iy·s − p + ky][ix·s − p + kx] += x[c][iy][ix]·w.
    static func convTranspose2d(_ x: [[[Double]]], weight: Tensor, bias: Tensor, stride s: Int, padding p: Int) -> [[[Double]]] {
        let c = weight.shape[0], o = weight.shape[1], k = weight.shape[2]
        let h = x[0].count, w = x[0][0].count
        let ho = (h - 1) * s - 2 * p + k, wo = (w - 1) * s - 2 * p + k
        var y = (0..<o).map { co in [[Double]](repeating: [Double](repeating: Double(bias.data[co]), count: wo), count: ho) }
        for ci in 0..<c {
            for iy in 0..<h {
                for ix in 0..<w {
                    for co in 0..<o {
                        for ky in 0..<k {
                            for kx in 0..<k {
                                let oy = iy * s - p + ky, ox = ix * s - p + kx
                                if oy < 0 || oy >= ho || ox < 0 || ox >= wo { continue }
                                y[co][oy][ox] += x[ci][iy][ix] * Double(weight.data[((ci * o + co) * k + ky) * k + kx])
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    static func relu(_ x: [[[Double]]]) -> [[[Double]]] { x.map { $0.map { $0.map { max($0, 0) } } } }

    /// Channels-last [H·W, C] tensor → [C][H][W].
    static func channelsFirst(_ t: Tensor, height h: Int, width w: Int) -> [[[Double]]] {
        let c = t.count / (h * w)
        return (0..<c).map { ci in (0..<h).map { y in (0..<w).map { x in Double(t.data[(y * w + x) * c + ci]) } } }
    }

    /// [C][H][W] → channels-last flat array.
    static func channelsLast(_ x: [[[Double]]]) -> [Float] {
        let c = x.count, h = x[0].count, w = x[0][0].count
        var out = [Float](repeating: 0, count: c * h * w)
        for ci in 0..<c { for y in 0..<h { for xx in 0..<w { out[(y * w + xx) * c + ci] = Float(x[ci][y][xx]) } } }
        return out
    }

    /// The whole decoder of SPEC §5.2, from the npz arrays, in direct loops.
    static func decode(_ npz: NPZFile, codes: [Int]) throws -> [Float] {
        let book = try npz.tensor("_vq_vae._embedding")
        let d = book.shape[1]
        var x = (0..<d).map { ch in (0..<4).map { r in (0..<4).map { c in Double(book.data[codes[r * 4 + c] * d + ch]) } } }
        func t(_ n: String) throws -> Tensor { try npz.tensor(n) }
        x = relu(conv2d(x, weight: try t("decoder.0.weight"), bias: try t("decoder.0.bias"), padding: 0))
        for b in [2, 3] {
            var h = relu(conv2d(x, weight: try t("decoder.\(b).net.0.weight"), bias: try t("decoder.\(b).net.0.bias"), padding: 1))
            h = relu(conv2d(h, weight: try t("decoder.\(b).net.2.weight"), bias: try t("decoder.\(b).net.2.bias"), padding: 1))
            h = conv2d(h, weight: try t("decoder.\(b).net.4.weight"), bias: try t("decoder.\(b).net.4.bias"), padding: 0)
            for c in 0..<h.count { for i in 0..<h[c].count { for j in 0..<h[c][i].count { h[c][i][j] += x[c][i][j] } } }
            x = h
        }
        for l in [4, 6, 8, 10] {
            x = relu(convTranspose2d(x, weight: try t("decoder.\(l).weight"), bias: try t("decoder.\(l).bias"), stride: 2, padding: 1))
        }
        x = conv2d(x, weight: try t("decoder.12.weight"), bias: try t("decoder.12.bias"), padding: 0)
        return x[0].flatMap { $0.map(Float.init) }
    }
}

/// A decoder npz with random weights and embedding width `d` (every array of SPEC §5.2, plus an
/// encoder array that must be ignored).
func randomDecoderArrays(d: Int, seed: UInt64) -> [(String, Tensor)] {
    var rng = SplitMix64(seed: seed)
    var arrays: [(String, Tensor)] = [("_vq_vae._embedding", randomTensor([128, d], rng: &rng)),
                                      ("encoder.0.weight", randomTensor([8, 1, 4, 4], rng: &rng))]
    for (name, shape) in MaskDecoder.expectedArrays(embeddingWidth: d) {
        let fanIn = shape.count == 4 ? (name.hasPrefix("decoder.4") || name.hasPrefix("decoder.6")
            || name.hasPrefix("decoder.8") || name.hasPrefix("decoder.10") ? shape[0] * 4 : shape[1] * shape[2] * shape[3]) : 16
        arrays.append((name, randomTensor(shape, scale: Float(1.7 / Double(fanIn).squareRoot()), rng: &rng)))
    }
    return arrays
}

@Suite struct MaskDecoderTests {
    @Test(arguments: [(1, 3, 3, 1, 1, 0), (4, 4, 5, 7, 3, 1), (5, 3, 2, 4, 3, 0), (8, 8, 16, 3, 1, 0), (6, 9, 3, 2, 3, 1),
                      (4, 4, 128, 128, 3, 1), (2, 7, 4, 5, 3, 2)])
    func conv2dMatchesDirectLoops(h: Int, w: Int, c: Int, o: Int, k: Int, p: Int) {
        var rng = SplitMix64(seed: UInt64(h * 1000 + w * 100 + c * 10 + o))
        let x = randomTensor([h * w, c], rng: &rng)
        let weight = randomTensor([o, c, k, k], rng: &rng), bias = randomTensor([o], rng: &rng)
        for relu in [false, true] {
            let fast = Convolution.conv2d(x, height: h, width: w, weight: weight, bias: bias, padding: p, relu: relu)
            var slow = DirectConv.conv2d(DirectConv.channelsFirst(x, height: h, width: w), weight: weight, bias: bias, padding: p)
            if relu { slow = DirectConv.relu(slow) }
            #expect(fast.shape == [(h + 2 * p - k + 1) * (w + 2 * p - k + 1), o])
            let err = relativeError(fast.scalars, DirectConv.channelsLast(slow))
            #expect(err < 1e-6, "conv2d h\(h) w\(w) c\(c) o\(o) k\(k) p\(p): relative error \(err)")
        }
    }

    @Test(arguments: [(4, 4, 128, 128, 4, 2, 1), (3, 5, 6, 4, 4, 2, 1), (1, 1, 2, 3, 4, 2, 1), (5, 2, 3, 2, 3, 1, 0),
                      (2, 3, 4, 5, 2, 2, 0), (6, 6, 32, 16, 4, 2, 1), (3, 3, 2, 2, 5, 3, 2)])
    func convTranspose2dMatchesDirectLoops(h: Int, w: Int, c: Int, o: Int, k: Int, s: Int, p: Int) {
        var rng = SplitMix64(seed: UInt64(h * 1000 + w * 100 + c * 10 + o + k))
        let x = randomTensor([h * w, c], rng: &rng)
        let weight = randomTensor([c, o, k, k], rng: &rng), bias = randomTensor([o], rng: &rng)
        let fast = Convolution.convTranspose2d(x, height: h, width: w, weight: weight, bias: bias, stride: s, padding: p, relu: false)
        let slow = DirectConv.convTranspose2d(DirectConv.channelsFirst(x, height: h, width: w), weight: weight, bias: bias, stride: s, padding: p)
        #expect(fast.shape == [((h - 1) * s - 2 * p + k) * ((w - 1) * s - 2 * p + k), o])
        let err = relativeError(fast.scalars, DirectConv.channelsLast(slow))
        #expect(err < 1e-6, "convTranspose2d h\(h) w\(w) c\(c) o\(o) k\(k) s\(s) p\(p): relative error \(err)")
    }

    @Test(arguments: [8, 24])
    func decoderMatchesDirectLoops(d: Int) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("vae.npz")
        try writeNPZ(randomDecoderArrays(d: d, seed: UInt64(d)), to: url, compressed: d == 8)
        let npz = try NPZFile(contentsOf: url)
        let decoder = try MaskDecoder(npz: npz)
        #expect(decoder.codebookSize == 128 && decoder.embeddingWidth == d)
        var rng = SplitMix64(seed: 99)
        for _ in 0..<1 {   // the direct loops are slow in debug builds
            let codes = (0..<16).map { _ in Int.random(in: 0..<128, using: &rng) }
            let mask = decoder.decode(codes: codes)
            #expect(mask.shape == [64, 64])
            let err = relativeError(mask.scalars, try DirectConv.decode(npz, codes: codes))
            #expect(err < 1e-5, "relative error \(err)")
        }
    }

    @Test func missingOrMisshapenArraysAreNamed() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = randomDecoderArrays(d: 8, seed: 1)
        let url = dir.appendingPathComponent("vae.npz")
        for name in ["_vq_vae._embedding", "decoder.0.weight", "decoder.3.net.4.bias", "decoder.10.weight", "decoder.12.bias"] {
            try writeNPZ(good.filter { $0.0 != name }, to: url)
            #expect(throws: NPZError.arrayNotFound(path: url.path, array: name)) { try MaskDecoder(contentsOf: url) }
        }
        var rng = SplitMix64(seed: 3)
        let wrong = good.map { $0.0 == "decoder.6.weight" ? ($0.0, randomTensor([128, 32, 4, 4], rng: &rng)) : $0 }
        try writeNPZ(wrong, to: url)
        #expect(throws: NPZError.shapeMismatch(path: url.path, array: "decoder.6.weight", expected: [128, 64, 4, 4], actual: [128, 32, 4, 4])) {
            try MaskDecoder(contentsOf: url)
        }
        try writeNPZ(good + [("decoder.14.weight", randomTensor([1], rng: &rng))], to: url)
        #expect(throws: MaskDecoderError.unexpectedArray(path: url.path, array: "decoder.14.weight")) { try MaskDecoder(contentsOf: url) }
        let decoder = try MaskDecoder(contentsOf: { try! writeNPZ(good, to: url); return url }())
        #expect(throws: MaskDecoderError.codeCount(got: 15)) { try decoder.validate(codes: Array(0..<15)) }
        #expect(throws: MaskDecoderError.codeOutOfRange(position: 3, code: 128, codebookSize: 128)) {
            try decoder.validate(codes: [0, 1, 2, 128] + Array(0..<12))
        }
    }

    /// PyTorch's decoder (random weights) on the codes of Tests/Oracle/make_vqvae_goldens.py.
    @Test func matchesPyTorch() throws {
        let npzURL = Fixtures.url("vqvae/random-vae.npz"), goldenURL = Fixtures.url("vqvae/golden.safetensors")
        try #require(FileManager.default.fileExists(atPath: npzURL.path), "missing \(npzURL.path)")
        let decoder = try MaskDecoder(contentsOf: npzURL)
        let golden = try SafetensorsFile(contentsOf: goldenURL)
        let cases = golden.tensorNames.filter { $0.hasPrefix("codes_") }
        #expect(!cases.isEmpty)
        for name in cases {
            let k = name.dropFirst("codes_".count)
            let codes = try golden.int64s(name).map { Int($0) }
            let expected = try golden.tensor("mask_\(k)")
            let got = decoder.decode(codes: codes)
            #expect(got.shape == expected.shape)
            let err = relativeError(got.scalars, expected.scalars)
            #expect(err < 1e-5, "case \(k): relative error \(err)")
        }
    }

    /// The demo's paste of PyTorch's masks into boxes (Pillow resize, /255), from the same goldens:
    /// `box_K` [x0, y0, x1, y1], `pasted_K` [H, W] (the 0/1 mask, or float values r / 255) and, when
    /// present, `pasted_soft_K` [H, W] (r / 255 before the threshold).
    @Test func pasteMatchesPyTorchGoldens() throws {
        let goldenURL = Fixtures.url("vqvae/golden.safetensors")
        try #require(FileManager.default.fileExists(atPath: goldenURL.path), "missing \(goldenURL.path)")
        let decoder = try MaskDecoder(contentsOf: Fixtures.url("vqvae/random-vae.npz"))
        let golden = try SafetensorsFile(contentsOf: goldenURL)
        let cases = golden.tensorNames.filter { $0.hasPrefix("box_") }
        for name in cases {
            let k = name.dropFirst("box_".count)
            let box = try golden.int64s(name).map { Int($0) }
            let info = try #require(golden.info("pasted_\(k)"))
            let (h, w) = (info.shape[0], info.shape[1])
            // The goldens' mask comes from PyTorch's decoder: decode with ours (within 1e-5), paste both ways.
            let codes = try golden.int64s("codes_\(k)").map { Int($0) }
            let logits = try golden.contains("mask_\(k)") ? golden.tensor("mask_\(k)") : decoder.decode(codes: codes)
            let bytes = MaskPaste.pastedBytes(logits: logits, box: box, imageWidth: w, imageHeight: h)
            switch info.dtype {
            case .f32, .f64, .f16, .bf16:
                let expected = try golden.tensor("pasted_\(k)").scalars
                let isBinary = expected.allSatisfy { $0 == 0 || $0 == 1 }
                let got: [Float] = bytes.map { (b: UInt8) -> Float in
                    isBinary ? (b >= 128 ? 1 : 0) : Float(Double(b) / 255)
                }
                #expect(got == expected, "case \(k), box \(box)")
            default:
                let expected: [UInt8] = try golden.rawBytes("pasted_\(k)").map { $0 != 0 ? 1 : 0 }
                let got: [UInt8] = bytes.map { $0 >= 128 ? 1 : 0 }
                #expect(got == expected, "case \(k), box \(box)")
            }
            if golden.contains("pasted_soft_\(k)") {
                let soft = try golden.tensor("pasted_soft_\(k)").scalars
                #expect(bytes.map { Float(Double($0) / 255) } == soft, "case \(k): resized values differ")
            }
            // And our own decoder's logits give the same binary mask (up to pixels whose logit sits on
            // a truncation boundary, none expected at 1e-5).
            let ours = MaskPaste.paste(logits: decoder.decode(codes: codes), box: box, imageWidth: w, imageHeight: h)
            let theirs: [UInt8] = bytes.map { $0 >= 128 ? 1 : 0 }
            #expect(ours == theirs, "case \(k): paste of our decoder's mask differs")
        }
    }
}
