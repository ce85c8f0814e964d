// BPE encoding as SentencePiece's bpe::Model::SampleEncode (bpe_model.cc, alpha = 0) followed by
// SentencePieceProcessor::PopulateSentencePieceText (unknown handling):
//
// 1. Split the normalized text into symbols: a whole USER_DEFINED piece (frozen: never merged)
//    or one UTF-8 character.
// 2. Push every adjacent pair whose concatenation is a piece (NORMAL, USER_DEFINED or UNUSED)
//    onto a max-heap ordered by (piece score, then leftmost position first).
// 3. Pop the best pair; skip it if either side changed since it was pushed; else merge, and push
//    the new pairs with the left and right neighbours. Repeat until the heap is empty.
// 4. Resegment: a final symbol that is an UNUSED piece is split back into the two symbols its
//    last recorded merge joined, recursively.
// 5. Emit ids: an unknown symbol becomes its UTF-8 bytes as <0xNN> pieces when the model has
//    byte fallback, else <unk>, with consecutive unknowns fused into one <unk>.
//
// Pairs are validated lazily (as SentencePiece does), so stale heap entries cost one pop each.

/// A symbol of the normalized text: bytes [start, start + length); length 0 once merged away.
private struct Symbol {
    var start: Int32
    var length: Int32
    var prev: Int32     // -1: first symbol
    var next: Int32     // -1: last symbol
    var id: Int32       // the normal piece this symbol is, once produced by a merge; else -1
    var frozen: Bool    // a user-defined piece
}

/// A mergeable pair of adjacent symbols. `key` orders the heap as SentencePiece's
/// SymbolPairComparator does: higher score first, then the leftmost pair. The pair is stale once
/// its two symbols no longer add up to the merged piece's length.
private struct Candidate {
    var key: UInt64     // score key << 32 | ~left
    var right: Int32
    var id: Int32       // the merged piece

    init(scoreKey: UInt32, left: Int32, right: Int32, id: Int32) {
        key = UInt64(scoreKey) << 32 | UInt64(~UInt32(bitPattern: left))
        self.right = right
        self.id = id
    }

    var left: Int32 { Int32(bitPattern: ~UInt32(truncatingIfNeeded: key)) }
}

@inline(__always)
private func popsBefore(_ a: Candidate, _ b: Candidate) -> Bool { a.key > b.key }

extension Vocabulary {
    /// Ids for valid UTF-8 `text`, as `SentencePieceProcessor::Encode` returns them (no BOS/EOS).
    func encode(_ text: UnsafeBufferPointer<UInt8>) -> [Int] {
        guard text.count > 0 else { return [] }
        // Padded: piece lookups read the normalized text eight bytes at a time.
        let capacity = Self.normalizedCapacity(text.count) + PieceIndex.padding
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buffer in
            let length = normalize(text, into: buffer.baseAddress!)
            (buffer.baseAddress! + length).initialize(repeating: 0, count: PieceIndex.padding)
            return encode(normalized: UnsafePointer(buffer.baseAddress!), length)
        }
    }

    private func encode(normalized text: UnsafePointer<UInt8>, _ n: Int) -> [Int] {
        guard n > 0 else { return [] }
        return withUnsafeTemporaryAllocation(of: Symbol.self, capacity: n) { symbolBuffer in
            // Each merge pushes at most two pairs: n - 1 initial pairs + 2 (n - 1) more.
            withUnsafeTemporaryAllocation(of: Candidate.self, capacity: 3 * n) { heapBuffer in
                merge(text, n, symbolBuffer.baseAddress!, heapBuffer.baseAddress!)
            }
        }
    }

    private func merge(_ text: UnsafePointer<UInt8>, _ n: Int,
                       _ symbols: UnsafeMutablePointer<Symbol>,
                       _ heap: UnsafeMutablePointer<Candidate>) -> [Int] {
        let pool = self.pool
        let offsets = self.offsets
        let scoreKeys = self.scoreKeys
        let types = self.types
        let normalIndex = self.normalIndex
        let maxLength = Int32(maxNormalPieceLength)
        let userDefinedEmpty = userDefined.isEmpty
        let unusedType = PieceType.unused.rawValue
        var revMerge: [Int32: (Int32, Int32, Int32, Int32)] = [:]  // only with UNUSED pieces

        // 1. Symbols.
        var count = 0
        var i = 0
        while i < n {
            var length = 0
            var frozen = false
            if !userDefinedEmpty {
                length = userDefined.longestMatch(text + i, n - i)
                frozen = length > 0
            }
            if length == 0 { length = min(utf8Length(lead: text[i]), n - i) }
            symbols[count] = Symbol(start: Int32(i), length: Int32(length), prev: Int32(count - 1),
                                    next: i + length < n ? Int32(count + 1) : -1, id: -1, frozen: frozen)
            count += 1
            i += length
        }

        // 2. The heap.
        var heapCount = 0
        @inline(__always) func push(_ candidate: Candidate) {
            var child = heapCount
            heapCount += 1
            while child > 0 {
                let parent = (child - 1) >> 1
                if !popsBefore(candidate, heap[parent]) { break }
                heap[child] = heap[parent]
                child = parent
            }
            heap[child] = candidate
        }
        @inline(__always) func pop() -> Candidate {
            let top = heap[0]
            heapCount -= 1
            if heapCount > 0 {
                let last = heap[heapCount]
                var parent = 0
                while true {
                    var child = 2 * parent + 1
                    if child >= heapCount { break }
                    if child + 1 < heapCount && popsBefore(heap[child + 1], heap[child]) { child += 1 }
                    if !popsBefore(heap[child], last) { break }
                    heap[parent] = heap[child]
                    parent = child
                }
                heap[parent] = last
            }
            return top
        }
        @inline(__always) func maybePush(_ left: Int32, _ right: Int32) {
            if left < 0 || right < 0 { return }
            let l = symbols[Int(left)]
            let r = symbols[Int(right)]
            if l.frozen || r.frozen { return }
            let length = l.length + r.length
            if length > maxLength { return }
            let id = normalIndex.lookupPadded(text + Int(l.start), Int(length), pool: pool, offsets: offsets)
            if id < 0 { return }
            push(Candidate(scoreKey: scoreKeys[Int(id)], left: left, right: right, id: id))
            if types[Int(id)] == unusedType {
                revMerge[id] = (l.start, l.length, r.start, r.length)
            }
        }

        for s in 1..<max(count, 1) { maybePush(Int32(s - 1), Int32(s)) }

        // 3. Merge.
        while heapCount > 0 {
            let top = pop()
            let left = Int(top.left)
            let right = Int(top.right)
            let l = symbols[left].length
            let r = symbols[right].length
            if l == 0 || r == 0 || l + r != offsets[Int(top.id) + 1] - offsets[Int(top.id)] { continue }
            symbols[left].length = l + r
            symbols[left].id = top.id
            let next = symbols[right].next
            symbols[left].next = next
            if next >= 0 { symbols[Int(next)].prev = Int32(left) }
            symbols[right].length = 0
            maybePush(symbols[left].prev, Int32(left))
            maybePush(Int32(left), next)
        }

        // 4-5. Resegment and emit.
        var output: [Int] = []
        output.reserveCapacity(count)
        var previousIsUnknown = false
        let byteFallback = self.byteFallback
        let unknown = PieceType.unknown.rawValue
        @inline(__always) func emit(_ id: Int32, _ start: Int32, _ length: Int32) {
            let type = types[Int(id)]
            if type == unknown {
                if byteFallback {
                    for b in Int(start)..<Int(start + length) { output.append(Int(byteIDs[Int(text[b])])) }
                } else if !previousIsUnknown {
                    output.append(Int(id))
                }
                previousIsUnknown = true
            } else {  // normal, user-defined, control (and an UNUSED piece that was never merged)
                output.append(Int(id))
                previousIsUnknown = false
            }
        }
        var index: Int32 = 0
        while index >= 0 {
            let symbol = symbols[Int(index)]
            index = symbol.next
            // PieceToId of the symbol: reserved pieces first, then normal ones, else <unk>.
            let id = symbol.id >= 0 ? canonical[Int(symbol.id)]
                                    : lookupID(text + Int(symbol.start), Int(symbol.length))
            if types[Int(id)] != unusedType || revMerge.isEmpty {
                emit(id, symbol.start, symbol.length)
                continue
            }
            // Split UNUSED pieces back, left part first.
            var stack: [(Int32, Int32, Int32)] = [(symbol.start, symbol.length, id)]
            while let (start, length, pieceID) = stack.popLast() {
                guard types[Int(pieceID)] == unusedType,
                      let split = revMerge[normalIndex.lookupPadded(text + Int(start), Int(length),
                                                                    pool: pool, offsets: offsets)] else {
                    emit(pieceID, start, length)
                    continue
                }
                stack.append((split.2, split.3, lookupID(text + Int(split.2), Int(split.3))))
                stack.append((split.0, split.1, lookupID(text + Int(split.0), Int(split.1))))
            }
        }
        return output
    }
}
