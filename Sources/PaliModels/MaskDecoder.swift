// The VQ-VAE mask decoder of PaliGemma's segmentation output (SPEC §5.2): 16 `<seg>` codes →
// codebook rows on a 4×4 grid → 1×1 conv + ReLU → 2 residual blocks → 4 transposed convs (×2 each,
// + ReLU) → 1×1 conv → [64, 64] mask logits in about [-1, 1] (not clipped, not thresholded).
// Weights: big_vision's `vae-oid.npz`, a PyTorch state dict in PyTorch layouts (names below);
// `encoder.*` (the encode path) is not used.
//
// Activations are channels-last ([H·W, C], row-major), so every convolution is one GEMM:
// Conv2d = im2col [Ho·Wo, C·k·k] × Wᵀ (W [O, C·k·k], PyTorch's [O, C, k, k] flattened);
// ConvTranspose2d = x [H·W, C] × W [C, O·k·k] (PyTorch's [C, O, k, k]) → col2im scatter-add.
// H, W = spatial size, C = input channels, O = output channels, k = kernel size.
import Foundation
import PaliTensor
import PaliWeights

public enum MaskDecoderError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file has a `decoder.*` array this decoder does not know (another architecture).
    case unexpectedArray(path: String, array: String)
    /// `decode` needs exactly 16 codes.
    case codeCount(got: Int)
    /// A code is outside the codebook.
    case codeOutOfRange(position: Int, code: Int, codebookSize: Int)

    public var description: String {
        switch self {
        case .unexpectedArray(let path, let array):
            return "\(path): array '\(array)' is not part of the big_vision VQ-VAE mask decoder (SPEC §5.2). "
                + "Use vae-oid.npz or a file with the same keys and layouts."
        case .codeCount(let got):
            return "the mask decoder takes exactly \(MaskDecoder.codesPerMask) codes (one 4×4 grid), got \(got)"
        case .codeOutOfRange(let position, let code, let size):
            return "code \(position + 1) is \(code), outside the codebook (0..<\(size))"
        }
    }
}

public final class MaskDecoder: @unchecked Sendable {
    public static let codesPerMask = 16
    public static let maskSize = 64

    /// One convolution's weights, kept in PyTorch layout.
    struct Conv {
        let weight: Tensor   // Conv2d [O, C, k, k]; ConvTranspose2d [C, O, k, k]
        let bias: Tensor     // [O]
    }

    /// Codebook [K, D].
    public let codebook: Tensor
    public var codebookSize: Int { codebook.shape[0] }
    public var embeddingWidth: Int { codebook.shape[1] }

    let input: Conv                 // decoder.0, 1×1, D → 128
    let residual: [[Conv]]          // decoder.{2,3}.net.{0,2,4}
    let upsample: [Conv]            // decoder.{4,6,8,10}, ConvTranspose2d k4 s2 p1
    let output: Conv                // decoder.12, 1×1, 16 → 1

    /// Array names and shapes of the decoder (D = embedding width), written once.
    public static func expectedArrays(embeddingWidth d: Int) -> [(name: String, shape: [Int])] {
        var list: [(String, [Int])] = [("decoder.0.weight", [128, d, 1, 1]), ("decoder.0.bias", [128])]
        for block in [2, 3] {
            for (layer, k) in [(0, 3), (2, 3), (4, 1)] {
                list.append(("decoder.\(block).net.\(layer).weight", [128, 128, k, k]))
                list.append(("decoder.\(block).net.\(layer).bias", [128]))
            }
        }
        for (layer, cin, cout) in [(4, 128, 128), (6, 128, 64), (8, 64, 32), (10, 32, 16)] {
            list.append(("decoder.\(layer).weight", [cin, cout, 4, 4]))
            list.append(("decoder.\(layer).bias", [cout]))
        }
        list.append(("decoder.12.weight", [1, 16, 1, 1]))
        list.append(("decoder.12.bias", [1]))
        return list
    }
    public static let codebookName = "_vq_vae._embedding"

    /// Loads and checks every decoder array of `npz` (e.g. vae-oid.npz).
    public init(npz: NPZFile) throws {
        let book = try npz.tensor(Self.codebookName)
        guard book.rank == 2, book.shape[0] >= 1, book.shape[1] >= 1 else {
            throw NPZError.shapeMismatch(path: npz.path, array: Self.codebookName, expected: [128, -1], actual: book.shape)
        }
        codebook = book
        let expected = Self.expectedArrays(embeddingWidth: book.shape[1])
        let known = Set(expected.map(\.name))
        if let extra = npz.names.first(where: { $0.hasPrefix("decoder.") && !known.contains($0) }) {
            throw MaskDecoderError.unexpectedArray(path: npz.path, array: extra)
        }
        var t: [String: Tensor] = [:]
        for (name, shape) in expected { t[name] = try npz.tensor(name, shape: shape) }
        func conv(_ prefix: String) -> Conv { Conv(weight: t[prefix + ".weight"]!, bias: t[prefix + ".bias"]!) }
        input = conv("decoder.0")
        residual = [2, 3].map { b in [0, 2, 4].map { conv("decoder.\(b).net.\($0)") } }
        upsample = [4, 6, 8, 10].map { conv("decoder.\($0)") }
        output = conv("decoder.12")
    }

    public convenience init(contentsOf url: URL) throws {
        try self.init(npz: try NPZFile(contentsOf: url))
    }

    /// Throws unless `codes` are 16 codebook indices.
    public func validate(codes: [Int]) throws {
        guard codes.count == Self.codesPerMask else { throw MaskDecoderError.codeCount(got: codes.count) }
        if let i = codes.firstIndex(where: { $0 < 0 || $0 >= codebookSize }) {
            throw MaskDecoderError.codeOutOfRange(position: i, code: codes[i], codebookSize: codebookSize)
        }
    }

    /// 16 codes (row-major over the 4×4 grid) → mask logits [64, 64], before any threshold.
    /// The codes must pass `validate(codes:)`.
    public func decode(codes: [Int]) -> Tensor {
        precondition((try? validate(codes: codes)) != nil, "invalid mask codes \(codes)")
        let d = embeddingWidth
        // Token i is grid cell (i / 4, i % 4): in channels-last layout, row i of [16, D].
        var x = Tensor(zeros: [16, d])
        for (i, c) in codes.enumerated() { (x.data + i * d).update(from: codebook.data + c * d, count: d) }
        var side = 4
        x = Convolution.conv2d(x, height: side, width: side, weight: input.weight, bias: input.bias, padding: 0, relu: true)
        for block in residual {
            var h = Convolution.conv2d(x, height: side, width: side, weight: block[0].weight, bias: block[0].bias, padding: 1, relu: true)
            h = Convolution.conv2d(h, height: side, width: side, weight: block[1].weight, bias: block[1].bias, padding: 1, relu: true)
            h = Convolution.conv2d(h, height: side, width: side, weight: block[2].weight, bias: block[2].bias, padding: 0, relu: false)
            for i in 0..<h.count { h.data[i] += x.data[i] }   // skip connection, no ReLU after the sum
            x = h
        }
        for up in upsample {
            x = Convolution.convTranspose2d(x, height: side, width: side, weight: up.weight, bias: up.bias,
                                            stride: 2, padding: 1, relu: true)
            side *= 2
        }
        x = Convolution.conv2d(x, height: side, width: side, weight: output.weight, bias: output.bias, padding: 0, relu: false)
        return x.reshaped([side, side])
    }
}

/// Stride-1 convolutions and transposed convolutions on channels-last activations, as GEMMs.
public enum Convolution {
    /// PyTorch Conv2d (stride 1, zero padding `padding`, square kernel): x [H·W, C] channels-last,
    /// weight [O, C, k, k], bias [O] → [Ho·Wo, O] with Ho = H + 2·padding − k + 1.
    public static func conv2d(_ x: Tensor, height h: Int, width w: Int, weight: Tensor, bias: Tensor,
                              padding p: Int, relu: Bool) -> Tensor {
        let o = weight.shape[0], c = weight.shape[1], k = weight.shape[2]
        precondition(weight.rank == 4 && weight.shape[3] == k && x.count == h * w * c && bias.count == o,
                     "conv2d: x \(x.shape) (\(h)×\(w)), weight \(weight.shape), bias \(bias.shape)")
        let ho = h + 2 * p - k + 1, wo = w + 2 * p - k + 1
        precondition(ho > 0 && wo > 0, "conv2d: kernel \(k) larger than padded input \(h)×\(w)")
        let flat = weight.reshaped([o, c * k * k])
        let cols: Tensor
        if k == 1 && p == 0 {
            cols = x.reshaped([h * w, c])
        } else {
            // im2col: row (oy, ox), column (ci, ky, kx) — the order of the flattened weight.
            cols = Tensor(zeros: [ho * wo, c * k * k])
            let kk = k * k
            for oy in 0..<ho {
                for ox in 0..<wo {
                    let row = cols.data + (oy * wo + ox) * c * kk
                    for ky in 0..<k {
                        let iy = oy + ky - p
                        guard iy >= 0 && iy < h else { continue }
                        for kx in 0..<k {
                            let ix = ox + kx - p
                            guard ix >= 0 && ix < w else { continue }
                            let src = x.data + (iy * w + ix) * c
                            let tap = ky * k + kx
                            for ci in 0..<c { row[ci * kk + tap] = src[ci] }
                        }
                    }
                }
            }
        }
        let y = Linear.forward(cols, weight: flat, bias: bias)
        if relu { for i in 0..<y.count where y.data[i] < 0 { y.data[i] = 0 } }
        return y
    }

    /// PyTorch ConvTranspose2d (square kernel, `stride`, `padding`, no output padding): x [H·W, C]
    /// channels-last, weight [C, O, k, k], bias [O] → [Ho·Wo, O] with Ho = (H − 1)·stride − 2·padding + k.
    public static func convTranspose2d(_ x: Tensor, height h: Int, width w: Int, weight: Tensor, bias: Tensor,
                                       stride s: Int, padding p: Int, relu: Bool) -> Tensor {
        let c = weight.shape[0], o = weight.shape[1], k = weight.shape[2]
        precondition(weight.rank == 4 && weight.shape[3] == k && x.count == h * w * c && bias.count == o,
                     "convTranspose2d: x \(x.shape) (\(h)×\(w)), weight \(weight.shape), bias \(bias.shape)")
        let ho = (h - 1) * s - 2 * p + k, wo = (w - 1) * s - 2 * p + k
        precondition(ho > 0 && wo > 0, "convTranspose2d: empty output for \(h)×\(w)")
        let kk = k * k, n = o * kk
        // cols [H·W, O·k·k]: every input pixel's contribution to its k×k output window, per channel.
        let cols = Tensor(zeros: [h * w, n])
        BLAS.sgemm(m: h * w, n: n, k: c, a: x.data, lda: c, b: weight.data, ldb: n, transposeB: false,
                   c: cols.data, ldc: n)
        // col2im: scatter-add into the output, then bias (and ReLU).
        let y = Tensor(zeros: [ho * wo, o])
        for iy in 0..<h {
            for ix in 0..<w {
                let src = cols.data + (iy * w + ix) * n
                for ky in 0..<k {
                    let oy = iy * s - p + ky
                    guard oy >= 0 && oy < ho else { continue }
                    for kx in 0..<k {
                        let ox = ix * s - p + kx
                        guard ox >= 0 && ox < wo else { continue }
                        let dst = y.data + (oy * wo + ox) * o
                        let tap = ky * k + kx
                        for co in 0..<o { dst[co] += src[co * kk + tap] }
                    }
                }
            }
        }
        for r in 0..<(ho * wo) {
            let row = y.data + r * o
            for co in 0..<o {
                let v = row[co] + bias.data[co]
                row[co] = relu && v < 0 ? 0 : v
            }
        }
        return y
    }
}
