// Key/value cache of one sequence for a range of decoder layers (a pipeline stage holds only its own).
// Per layer: K and V [capacity, KV·hd], rows in sequence order. Positions are never evicted: sliding
// windows are applied by the mask, and with one or a few KV heads the whole cache stays small
// (Gemma-2B: ~36 KiB per token for 18 layers in f32).
import PaliTensor

public final class KVCache: @unchecked Sendable {
    public let layers: Range<Int>
    public let kvWidth: Int
    public private(set) var capacity: Int
    /// Tokens already stored (the same for every layer once a forward step has finished).
    public internal(set) var length: Int = 0
    var keys: [UnsafeMutablePointer<Float>]
    var values: [UnsafeMutablePointer<Float>]

    public init(layers: Range<Int>, kvWidth: Int, capacity: Int) {
        self.layers = layers
        self.kvWidth = kvWidth
        self.capacity = max(capacity, 1)
        keys = layers.map { _ in .allocate(capacity: max(capacity, 1) * kvWidth) }
        values = layers.map { _ in .allocate(capacity: max(capacity, 1) * kvWidth) }
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }

    /// Makes room for `needed` tokens in total, keeping what is stored.
    public func reserve(_ needed: Int) {
        guard needed > capacity else { return }
        let newCapacity = max(needed, capacity * 2)
        for i in keys.indices {
            for isKey in [true, false] {
                let old = isKey ? keys[i] : values[i]
                let fresh = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * kvWidth)
                fresh.update(from: old, count: length * kvWidth)
                old.deallocate()
                if isKey { keys[i] = fresh } else { values[i] = fresh }
            }
        }
        capacity = newCapacity
    }

    func key(layer: Int) -> UnsafeMutablePointer<Float> { keys[layer - layers.lowerBound] }
    func value(layer: Int) -> UnsafeMutablePointer<Float> { values[layer - layers.lowerBound] }

    /// Forgets everything (the slot is reused for another sequence).
    public func reset() { length = 0 }

    /// Forgets the tokens after the first `n` (e.g. to decode the same steps again from a prefill).
    public func truncate(to n: Int) {
        precondition(n >= 0 && n <= length, "truncate(to: \(n)) of a cache holding \(length) tokens")
        length = n
    }

    /// An independent cache holding the same tokens (room for `capacity` in total).
    public func copy(capacity: Int? = nil) -> KVCache {
        let c = KVCache(layers: layers, kvWidth: kvWidth, capacity: max(capacity ?? self.capacity, length))
        for i in keys.indices {
            c.keys[i].update(from: keys[i], count: length * kvWidth)
            c.values[i].update(from: values[i], count: length * kvWidth)
        }
        c.length = length
        return c
    }
}
