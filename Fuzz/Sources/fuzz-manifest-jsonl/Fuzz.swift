// A jsonl manifest: ManifestReader.validate reads every entry (line splitting, UTF-8 check, the
// JSON object per line, required fields, duplicate ids). Paths are not resolved
// (no file-system look-ups), as in validate.
import FuzzSupport
import PaliBatch

let scratch = ScratchFile(suffix: ".jsonl")
let options = ManifestOptions(imageRoot: nil, defaultPrompt: "caption en")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    scratch.write(data, size)
    _ = try? ManifestReader.validate(.file(scratch.url, .jsonl), options: options)
    return 0
}
