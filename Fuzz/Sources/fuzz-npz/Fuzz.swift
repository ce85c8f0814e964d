// NPZ: a ZIP archive (ZIPFoundation, size and CRC checks) of .npy arrays. Every input goes to
// NPYParser (in memory); inputs starting with "PK" also go through NPZFile(contentsOf:) as a file.
// (ZIPFoundation's in-memory Archive(data:) leaks the archive's buffer, so the file it is.)
import FuzzSupport
import PaliWeights

let scratch = ScratchFile(suffix: ".npz")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? NPYParser.parse(bytes, path: "fuzz.npy", name: "fuzz")
    if size >= 2, data[0] == 0x50, data[1] == 0x4B {
        scratch.write(data, size)
        if let file = try? NPZFile(contentsOf: scratch.url) {
            for name in file.names { _ = file.array(name)?.shape }
        }
    }
    return 0
}
