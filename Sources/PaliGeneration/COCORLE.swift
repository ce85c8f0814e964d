// COCO run-length encoding of binary masks, as pycocotools' `mask.encode` writes it:
// `{"size": [h, w], "counts": "..."}`. The mask is read in column-major order (down each column,
// columns left to right); runs alternate 0s and 1s starting with the count of 0s (which may be 0).
// `counts` is the compressed string of the COCO API (maskApi.c, rleToString): every count from the
// third on is written as the difference to the count two before it; each value is written as
// signed little-endian 5-bit groups, least significant first, in characters 48 + group, where 0x20
// marks "another group follows" and the sign is bit 0x10 of the last group.

public struct COCORLE: Sendable, Equatable, Hashable {
    /// [height, width] of the mask.
    public var size: [Int]
    /// The compressed counts string.
    public var counts: String

    public init(size: [Int], counts: String) {
        self.size = size
        self.counts = counts
    }

    public var height: Int { size.count == 2 ? size[0] : 0 }
    public var width: Int { size.count == 2 ? size[1] : 0 }

    /// Encodes a row-major mask (`mask[y * width + x]`, nonzero = foreground).
    public init(mask: [UInt8], height: Int, width: Int) {
        precondition(height >= 0 && width >= 0 && mask.count == height * width,
                     "mask of \(mask.count) values is not \(height)×\(width)")
        self.init(size: [height, width], counts: Self.compress(Self.runs(mask: mask, height: height, width: width)))
    }

    /// Run lengths of a row-major mask in column-major order, starting with a run of zeros.
    public static func runs(mask: [UInt8], height: Int, width: Int) -> [Int] {
        var runs: [Int] = []
        var current: UInt8 = 0, length = 0
        for x in 0..<width {
            for y in 0..<height {
                let v: UInt8 = mask[y * width + x] != 0 ? 1 : 0
                if v != current {
                    runs.append(length)
                    current = v
                    length = 0
                }
                length += 1
            }
        }
        runs.append(length)
        return runs
    }

    /// The COCO API's string form of run lengths.
    public static func compress(_ runs: [Int]) -> String {
        var out: [UInt8] = []
        for (i, run) in runs.enumerated() {
            var x = run
            if i > 2 { x -= runs[i - 2] }
            var more = true
            while more {
                var c = x & 0x1F
                x >>= 5   // arithmetic shift: negative differences keep their sign
                more = (c & 0x10) != 0 ? x != -1 : x != 0
                if more { c |= 0x20 }
                out.append(UInt8(c + 48))
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Run lengths back from the string form; nil when the string is malformed (a character
    /// outside 48...111, a value left unfinished, a negative run, or an absurd value).
    public static func decompress(_ counts: String) -> [Int]? {
        var runs: [Int] = []
        let bytes = Array(counts.utf8)
        var p = 0
        while p < bytes.count {
            var x = 0, k = 0, more = true
            while more {
                guard p < bytes.count, bytes[p] >= 48, bytes[p] < 48 + 64, k < 12 else { return nil }
                let c = Int(bytes[p]) - 48
                x |= (c & 0x1F) << (5 * k)
                more = (c & 0x20) != 0
                p += 1
                k += 1
                if !more && (c & 0x10) != 0 { x |= -1 << (5 * k) }
            }
            if runs.count > 2 { x += runs[runs.count - 2] }
            guard x >= 0 else { return nil }
            runs.append(x)
        }
        return runs
    }

    /// The row-major mask (1 = foreground), or nil when `counts` is malformed or does not cover
    /// exactly height × width pixels.
    public func decode() -> [UInt8]? {
        let h = height, w = width
        guard size.count == 2, h >= 0, w >= 0, let runs = Self.decompress(counts) else { return nil }
        var total = 0
        for r in runs {
            let (s, o) = total.addingReportingOverflow(r)
            guard !o else { return nil }
            total = s
        }
        guard total == h * w else { return nil }
        var mask = [UInt8](repeating: 0, count: h * w)
        var i = 0, value: UInt8 = 0
        for r in runs {
            if value == 1 {
                for j in i..<(i + r) { mask[(j % h) * w + j / h] = 1 }
            }
            i += r
            value ^= 1
        }
        return mask
    }
}
