// A csv manifest: ManifestReader.validate reads every entry (line splitting, UTF-8 check, the
// RFC 4180 CSV with its header row, required fields, duplicate ids). Paths are not resolved
// (no file-system look-ups), as in validate.
import FuzzSupport
import PaliBatch

let scratch = ScratchFile(suffix: ".csv")
let options = ManifestOptions(imageRoot: nil, defaultPrompt: "caption en")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    scratch.write(data, size)
    _ = try? ManifestReader.validate(.file(scratch.url, .csv), options: options)
    return 0
}
