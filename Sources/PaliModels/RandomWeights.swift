// Random weights made in memory, for benchmarks and shape tests without a checkpoint.
// Values are uniform in ±scale (LayerNorm/RMSNorm weights too, which is harmless for timing).
import PaliTensor

public final class RandomWeights: WeightSource {
    var state: UInt64
    let scale: Float
    /// How packed matrices are kept (`bench --weights`): BF16 rounds the random values at packing.
    public var weightsMode: WeightsMode = .auto
    /// How each matrix gets its GEMM kernel (`bench --gemm`).
    public var gemm: GEMMPolicy = .fixed(.best)

    public init(seed: UInt64 = 0, scale: Float = 0.02) {
        state = seed &+ 0x1234_5678
        self.scale = scale
    }

    public func contains(_ name: String) -> Bool { true }

    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let t = Tensor(zeros: shape)
        let p = t.data, s = scale
        let seed = state
        state = state &* 6364136223846793005 &+ 1442695040888963407
        // Chunks of 1M values, each from its own xorshift64* stream: fast and independent of threads.
        let chunk = 1 << 20
        Parallel.forEachChunk((t.count + chunk - 1) / chunk) { chunks in
            for c in chunks {
                var x = (seed ^ UInt64(c + 1) &* 0x9E37_79B9_7F4A_7C15) | 1
                for i in (c * chunk)..<min(t.count, (c + 1) * chunk) {
                    x ^= x >> 12; x ^= x << 25; x ^= x >> 27
                    let r = x &* 0x2545_F491_4F6C_DD1D
                    p[i] = (Float(r >> 40) / Float(1 << 24) * 2 - 1) * s
                }
            }
        }
        return t
    }
}
