import Testing
@testable import PaliModels

@Test func kvCacheCopyIsIndependentAndTruncateKeepsThePrefix() {
    let c = KVCache(layers: 2..<4, kvWidth: 3, capacity: 2)
    c.reserve(5)
    for layer in 2..<4 {
        for i in 0..<(5 * 3) { c.key(layer: layer)[i] = Float(layer * 100 + i); c.value(layer: layer)[i] = -Float(layer * 100 + i) }
    }
    c.length = 5
    let d = c.copy()
    #expect(d.length == 5 && d.layers == 2..<4 && d.capacity >= 5)
    for layer in 2..<4 {
        #expect((0..<15).allSatisfy { d.key(layer: layer)[$0] == Float(layer * 100 + $0) && d.value(layer: layer)[$0] == -Float(layer * 100 + $0) })
    }
    d.key(layer: 3)[0] = 42
    #expect(c.key(layer: 3)[0] == 300, "the copy has its own memory")
    d.truncate(to: 2)
    #expect(d.length == 2 && c.length == 5)
    #expect(d.key(layer: 2)[5] == 205, "truncate keeps the first tokens")
}
