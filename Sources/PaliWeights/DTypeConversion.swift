// Element conversions from a file's little-endian bytes to Float32. Sources may be unaligned
// (a tensor's offset in the file is arbitrary), so every read is an unaligned load.
//
// BF16 is the high half of an F32: shifting it up is exact, NaN payloads included.
// F16 converts exactly (every half value is representable in F32, subnormals included).
// F64 narrows with round-to-nearest-even (Float(Double)).

/// Half (IEEE binary16) bits to Float32, exactly, written out so it does not depend on the
/// platform's Float16 (missing on macOS x86_64). NaN payloads are kept, not quieted.
@inline(__always)
func floatFromHalfBits(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    let mantissa = UInt32(h) & 0x3FF
    if exponent == 0x1F {  // inf / nan
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    if exponent != 0 {  // normal: rebias 15 -> 127
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }
    // zero or subnormal: mantissa × 2^-24, exact in Float32.
    let magnitude = Float(mantissa) * 0x1p-24
    return Float(bitPattern: sign | magnitude.bitPattern)
}

@inline(__always)
func floatFromBFloat16Bits(_ b: UInt16) -> Float {
    Float(bitPattern: UInt32(b) << 16)
}

/// Converts `count` elements of `dtype` at `source` (any alignment) into `destination`.
/// `dtype` must be a floating-point type (F32, F16, BF16, F64).
func convertToFloat(_ dtype: SafetensorsDType, from source: UnsafeRawPointer, count: Int,
                    into destination: UnsafeMutablePointer<Float>) {
    switch dtype {
    case .f32:
        UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
    case .bf16:
        for i in 0..<count {
            destination[i] = floatFromBFloat16Bits(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
    case .f16:
        for i in 0..<count {
            let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            #if (arch(x86_64) && os(Linux)) || arch(arm64)
            destination[i] = Float(Float16(bitPattern: bits))
            #else
            destination[i] = floatFromHalfBits(bits)
            #endif
        }
    case .f64:
        for i in 0..<count {
            destination[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
        }
    default:
        preconditionFailure("convertToFloat called for \(dtype.rawValue)")
    }
}
