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

    /// Threads the engine uses: the packed GEMM, element-wise kernels and attention heads all split
    /// their work over this many (`Parallel.threads`). The default is OpenBLAS's own choice, so
    /// `OPENBLAS_NUM_THREADS` still sets it. OpenBLAS itself then runs each call on the calling thread:
    /// attention calls it from several threads at once, and an OpenBLAS pool spinning beside our
    /// own threads between calls took ~10% of the CPU here.
    public static var threads: Int {
        get { Parallel.threads }
        set { Parallel.threads = max(1, newValue) }
    }

    /// OpenBLAS's default thread count, after which OpenBLAS is set to one thread per call.
    static func takeOverThreads() -> Int {
        let n = Int(openblas_get_num_threads())
        openblas_set_num_threads(1)
        return max(1, n)
    }

    /// Runs `body` with OpenBLAS using `n` threads itself (the benchmark's reference sgemm rate).
    public static func withOpenBLASThreads<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
        _ = Parallel.threads
        openblas_set_num_threads(Int32(n))
        defer { openblas_set_num_threads(1) }
        return try body()
    }
}
