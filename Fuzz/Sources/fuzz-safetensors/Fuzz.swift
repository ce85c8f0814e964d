// safetensors: the 8-byte length, the JSON header (StrictJSON), every entry's validation, then every
// tensor read back the ways the loaders read them (F32 view or conversion, integers, raw bytes, rows).
import FuzzSupport
import PaliWeights

let scratch = ScratchFile(suffix: ".safetensors")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    scratch.write(data, size)
    guard let file = try? SafetensorsFile(contentsOf: scratch.url) else { return 0 }
    for name in file.tensorNames {
        guard let info = file.info(name) else { fatalError("tensorNames lists \(name) but info() has none") }
        _ = try? file.tensor(name)
        _ = try? file.int64s(name)
        _ = try? file.int32s(name)
        _ = try? file.rawBytes(name)
        if let rows = try? file.matrixRows(name), rows.rowCount > 0 {
            try? rows.withRows(0..<rows.rowCount) { _ in }
        }
        precondition(info.byteCount == info.dataOffsets.count)
    }
    return 0
}
