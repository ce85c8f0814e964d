// config.json: JSONDecoder into PaliGemmaConfiguration (vision and text sub-configs, defaults, checks),
// the diagnosis of syntax errors, and the encode/decode round trip of what was accepted.
import Foundation
import PaliWeights

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    guard let config = try? PaliGemmaConfiguration(data: bytes) else { return 0 }
    _ = config.numImageTokens
    _ = config.embedScale
    for layer in 0..<min(config.text.layers, 64) { _ = config.isSlidingLayer(layer) }
    if let encoded = try? JSONEncoder().encode(config) {
        _ = try? PaliGemmaConfiguration(data: encoded)
    }
    return 0
}
