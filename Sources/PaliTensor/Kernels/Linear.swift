// Linear layers over unpacked weights, through OpenBLAS.
// Weights use PyTorch's layout: W [N, K] (out, in); y = x · Wᵀ + b.
import CBLAS

public enum Linear {
    /// y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias[N]) through OpenBLAS, for weights used too rarely to pack
    /// (the model's layers use `PackedWeight`, PackedLinear.swift).
    public static func forward(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int,
                               weight w: UnsafePointer<Float>, outFeatures n: Int,
                               bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    1, x, Int32(k), w, Int32(k), 0, y, Int32(n))
        if let bias { addBias(bias, rows: m, width: n, into: y) }
    }

    static func addBias(_ bias: UnsafePointer<Float>, rows m: Int, width n: Int, into y: UnsafeMutablePointer<Float>) {
        for r in 0..<m {
            let row = y + r * n
            for j in 0..<n { row[j] += bias[j] }
        }
    }

    /// Tensor form: x [..., K], weight [N, K], bias [N] → [..., N].
    public static func forward(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        let k = x.columns, n = weight.shape[0]
        precondition(weight.rank == 2 && weight.shape[1] == k, "Linear: x \(x.shape) vs weight \(weight.shape)")
        precondition(bias == nil || bias!.count == n, "Linear: bias \(bias!.shape) vs weight \(weight.shape)")
        var outShape = x.shape
        outShape[outShape.count - 1] = n
        let y = Tensor(zeros: outShape)
        forward(x.data, rows: x.rows, inFeatures: k, weight: weight.data, outFeatures: n,
                bias: bias?.data, into: y.data)
        return y
    }
}

extension Reference {
    /// y = x · Wᵀ + b in double precision, one dot product at a time.
    public static func linear(_ x: [Float], rows m: Int, inFeatures k: Int, weight w: [Float], outFeatures n: Int,
                              bias: [Float]?) -> [Float] {
        var y = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = Double(bias?[j] ?? 0)
                for p in 0..<k { s += Double(x[i * k + p]) * Double(w[j * k + p]) }
                y[i * n + j] = Float(s)
            }
        }
        return y
    }
}
