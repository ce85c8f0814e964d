// Work splitting for the GEMM, element-wise and attention kernels: a rank given n cores (`--threads`,
// or OPENBLAS_NUM_THREADS) uses n everywhere (one thread per rank when ranks share a machine).
import Dispatch

public enum Parallel {
    /// Threads used by `forEachChunk` (= `BLAS.threads`); OpenBLAS's default until set.
    nonisolated(unsafe) public static var threads: Int = BLAS.takeOverThreads()

    /// Calls `body` on disjoint chunks covering 0..<count, in parallel when worthwhile.
    /// `grain` is the smallest chunk worth a thread.
    public static func forEachChunk(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        let t = min(threads, max(1, count / max(grain, 1)))
        if t <= 1 { body(0..<count); return }
        DispatchQueue.concurrentPerform(iterations: t) { c in
            let lo = count * c / t, hi = count * (c + 1) / t
            if lo < hi { body(lo..<hi) }
        }
    }
}
