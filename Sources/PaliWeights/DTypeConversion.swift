// Element conversions from a file's little-endian bytes to Float32. Sources may be unaligned
// (a tensor's offset in the file is arbitrary), so every read is an unaligned load.
//
// BF16 is the high half of an F32: shifting it up is exact, NaN payloads included.
// F16 converts exactly (every half value is representable in F32, subnormals included); both in
// CKernels (pg_convert_to_f32), shared with the weight packer.
// F64 narrows with round-to-nearest-even (Float(Double)).

import CKernels

/// Converts `count` elements of `dtype` at `source` (any alignment) into `destination`.
/// `dtype` must be a floating-point type (F32, F16, BF16, F64). F16 and BF16 go through the same C
/// routine the weight packer uses (`pg_convert_to_f32`), so a tensor and a packed matrix read the
/// same bits the same way.
func convertToFloat(_ dtype: SafetensorsDType, from source: UnsafeRawPointer, count: Int,
                    into destination: UnsafeMutablePointer<Float>) {
    switch dtype {
    case .f32:
        UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
    case .bf16:
        pg_convert_to_f32(Int32(PG_BF16), source, count, destination)
    case .f16:
        pg_convert_to_f32(Int32(PG_F16), source, count, destination)
    case .f64:
        for i in 0..<count {
            destination[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
        }
    default:
        preconditionFailure("convertToFloat called for \(dtype.rawValue)")
    }
}
