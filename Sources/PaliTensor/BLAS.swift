// Thin Swift wrappers over OpenBLAS's CBLAS: the only file of PaliTensor that sees C.
import CBLAS

public enum BLAS {
    /// C[M,N] = alpha · A[M,K] · op(B) + beta · C, row-major.
    /// `transposeB`: B is stored [N,K] (PyTorch Linear weight layout) and used as Bᵀ.
    @inlinable
    public static func sgemm(
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }

    /// Number of threads OpenBLAS uses.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set {
            openblas_set_num_threads(Int32(newValue))
            Parallel.threads = newValue
        }
    }
}
