// Seeded randomness for the pipeline tests (SplitMix64: the same stream on every platform).
@testable import PaliPipeline

struct TestRandom {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<bound.
    mutating func int(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// Any bit pattern, NaNs and infinities included.
    mutating func float() -> Float { Float(bitPattern: UInt32(truncatingIfNeeded: next())) }

    mutating func message(maxFloats: Int = 300) -> Message {
        Message(kind: MessageKind.allCases[int(MessageKind.allCases.count)],
                header: (0..<int(300)).map { _ in UInt8(truncatingIfNeeded: next()) },
                floats: (0..<int(maxFloats + 1)).map { _ in float() })
    }
}
