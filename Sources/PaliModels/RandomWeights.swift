// Random weights made in memory, for benchmarks and shape tests without a checkpoint.
// Values are uniform in ±scale (LayerNorm/RMSNorm weights too, which is harmless for timing).
import PaliTensor

public final class RandomWeights: WeightSource {
    var state: UInt64
    let scale: Float

    public init(seed: UInt64 = 0, scale: Float = 0.02) {
        state = seed &+ 0x1234_5678
        self.scale = scale
    }

    public func contains(_ name: String) -> Bool { true }

    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let t = Tensor(zeros: shape)
        let p = t.data, n = t.count, s = scale
        var x = state
        for i in 0..<n {
            // xorshift64*: fast enough for billions of values.
            x ^= x >> 12; x ^= x << 25; x ^= x >> 27
            let r = x &* 0x2545_F491_4F6C_DD1D
            p[i] = (Float(r >> 40) / Float(1 << 24) * 2 - 1) * s
        }
        state = x
        return t
    }
}
