// Detection and segmentation outputs (SPEC §5.1, §5.2): decoded text (special tokens skipped,
// <locNNNN> and <segNNN> kept) → objects with a box in pixels of the original image and, for
// segmentation, a COCO RLE mask. Conventions are documented in docs/tasks.md.
//
// Grammar (whitespace between tokens is ignored; objects are separated by ';'):
//   object := <loc y0><loc x0><loc y1><loc x1> [<seg>×16] [label]
// label = the text after the tokens, trimmed, without '<', '>' or ';' (may be empty).
// A <loc> also starts a new object when the current one already has 4 <loc>s, a <seg> or text,
// so "<loc>×4 cat <loc>×4 dog" and "<loc>×8" are two objects, as with the reference regex.
// Anything else is malformed: it is reported in `problems` and left out; the other objects stay.
//
// Boxes (Google's demo convention): x = round(bin / 1024 · width), y = round(bin / 1024 · height),
// with Python's round (half to even).
import PaliJSON
import PaliModels

/// One detected or segmented object.
public struct TaskObject: Sendable, Equatable {
    public var label: String
    /// [x0, y0, x1, y1] in pixels of the original image (x1, y1 exclusive).
    public var box: [Int]
    /// The location bins as generated: [y0, x0, y1, x1], each 0...1023.
    public var bins: [Int]
    /// The 16 seg codes, when the object has them.
    public var codes: [Int]?
    /// The mask over the whole image, when the object has seg codes and a mask decoder was given.
    public var mask: COCORLE?

    public init(label: String, box: [Int], bins: [Int], codes: [Int]? = nil, mask: COCORLE? = nil) {
        self.label = label; self.box = box; self.bins = bins; self.codes = codes; self.mask = mask
    }
}

/// What `TaskOutput.parse` found.
public struct TaskParse: Sendable, Equatable {
    /// Well-formed objects, in output order.
    public var objects: [TaskObject]
    /// One sentence per malformed part of the output (empty when all is well).
    public var problems: [String]
    /// Whether the text holds any <loc> or <seg> token (then records carry `objects`).
    public var hasTaskTokens: Bool

    public init(objects: [TaskObject] = [], problems: [String] = [], hasTaskTokens: Bool = false) {
        self.objects = objects; self.problems = problems; self.hasTaskTokens = hasTaskTokens
    }

    /// Fields to add to a JSON record: nil when the text has no <loc>/<seg> token; otherwise
    /// `objects` and, when there are problems, `problems` (strings).
    public var jsonFields: [(String, JSONValue)]? {
        guard hasTaskTokens else { return nil }
        var fields: [(String, JSONValue)] = [("objects", objectsJSON)]
        if !problems.isEmpty { fields.append(("problems", problemsJSON)) }
        return fields
    }

    /// The objects as a JSON array, keys in the order label, box, mask ({"size", "counts"}).
    public var objectsJSON: JSONValue {
        .array(objects.map { o in
            var members: [(String, JSONValue)] = [("label", .string(o.label)), ("box", .array(o.box.map { .int($0) }))]
            if let m = o.mask {
                members.append(("mask", .object([("size", .array(m.size.map { .int($0) })), ("counts", .string(m.counts))])))
            }
            return .object(members)
        })
    }

    /// The problems as a JSON array of strings.
    public var problemsJSON: JSONValue { .array(problems.map { .string($0) }) }
}

public enum TaskOutput {
    /// Location bins per axis.
    public static let bins = 1024
    /// Seg codes per mask.
    public static let codesPerMask = 16
    /// Codebook size assumed when no mask decoder is given (vae-oid.npz has 128).
    public static let defaultCodebookSize = 128

    /// Parses decoded text into objects in pixels of an image of `imageWidth` × `imageHeight`.
    /// With a mask decoder, objects with 16 seg codes get their mask pasted into the box (see
    /// `MaskPaste`) and encoded as COCO RLE. Never throws: malformed parts become `problems`.
    public static func parse(text: String, imageWidth: Int, imageHeight: Int, maskDecoder: MaskDecoder?) -> TaskParse {
        let items = tokenize(text)
        var result = TaskParse()
        result.hasTaskTokens = items.contains { if case .text = $0 { return false } else { return true } }
        guard result.hasTaskTokens else { return result }
        let codebookSize = maskDecoder?.codebookSize ?? defaultCodebookSize
        for (n, piece) in split(items).enumerated() {
            switch object(piece, codebookSize: codebookSize) {
            case .empty:
                continue
            case .malformed(let why):
                result.problems.append("object \(n + 1) (\(quote(piece))): \(why)")
            case .object(let bins, let codes, let label):
                let box = [pixel(bins[1], imageWidth), pixel(bins[0], imageHeight),
                           pixel(bins[3], imageWidth), pixel(bins[2], imageHeight)]
                var o = TaskObject(label: label, box: box, bins: bins, codes: codes)
                if let codes, let maskDecoder {
                    let logits = maskDecoder.decode(codes: codes)
                    let mask = MaskPaste.paste(logits: logits, box: box, imageWidth: imageWidth, imageHeight: imageHeight)
                    o.mask = COCORLE(mask: mask, height: imageHeight, width: imageWidth)
                }
                result.objects.append(o)
            }
        }
        return result
    }

    /// A bin's pixel coordinate along an axis of `size` pixels: round(bin / 1024 · size), half to even
    /// (Python's round, as in Google's demo).
    public static func pixel(_ bin: Int, _ size: Int) -> Int {
        Int((Double(bin) / Double(bins) * Double(size)).rounded(.toNearestOrEven))
    }

    // MARK: - Tokens and pieces

    enum Item: Equatable {
        case loc(Int), seg(Int), text(String)
        var source: String {
            switch self {
            case .loc(let n): return "<loc" + String(repeating: "0", count: max(0, 4 - String(n).count)) + String(n) + ">"
            case .seg(let n): return "<seg" + String(repeating: "0", count: max(0, 3 - String(n).count)) + String(n) + ">"
            case .text(let s): return s
            }
        }
    }

    /// Splits text into <locNNNN> (exactly 4 digits), <segNNN> (exactly 3 digits) and text runs.
    static func tokenize(_ text: String) -> [Item] {
        let s = Array(text.unicodeScalars)
        var items: [Item] = []
        var run = String.UnicodeScalarView()
        func digits(_ from: Int, _ count: Int) -> Int? {
            guard from + count < s.count, s[from + count] == ">" else { return nil }
            var v = 0
            for j in from..<(from + count) {
                guard ("0"..."9").contains(s[j]) else { return nil }
                v = v * 10 + Int(s[j].value - 48)
            }
            return v
        }
        func flush() {
            if !run.isEmpty { items.append(.text(String(run))); run = String.UnicodeScalarView() }
        }
        var i = 0
        while i < s.count {
            if s[i] == "<", i + 4 < s.count {
                let tag = String(String.UnicodeScalarView(s[(i + 1)...(i + 3)]))
                if tag == "loc", let v = digits(i + 4, 4) {
                    flush(); items.append(.loc(v)); i += 9; continue
                }
                if tag == "seg", let v = digits(i + 4, 3) {
                    flush(); items.append(.seg(v)); i += 8; continue
                }
            }
            run.append(s[i])
            i += 1
        }
        flush()
        return items
    }

    /// Splits items into object pieces: at every ';', and before a <loc> that follows text,
    /// a <seg>, or 4 <loc>s of the current piece.
    static func split(_ items: [Item]) -> [[Item]] {
        var pieces: [[Item]] = []
        var current: [Item] = []
        var locs = 0, hasSeg = false, hasText = false
        func close() {
            pieces.append(current)
            current = []; locs = 0; hasSeg = false; hasText = false
        }
        for item in items {
            switch item {
            case .loc:
                if locs >= 4 || hasSeg || hasText { close() }
                current.append(item); locs += 1
            case .seg:
                current.append(item); hasSeg = true
            case .text(let t):
                let parts = t.split(separator: ";", omittingEmptySubsequences: false)
                for (k, part) in parts.enumerated() {
                    if k > 0 { close() }
                    if !part.isEmpty {
                        current.append(.text(String(part)))
                        if !isBlank(part) { hasText = true }
                    }
                }
            }
        }
        close()
        return pieces
    }

    enum PieceResult: Equatable {
        case empty
        case malformed(String)
        case object(bins: [Int], codes: [Int]?, label: String)
    }

    /// Checks one piece against `<loc>×4 [<seg>×16] [label]`.
    static func object(_ piece: [Item], codebookSize: Int) -> PieceResult {
        let meaningful = piece.filter { if case .text(let t) = $0 { return !isBlank(t) } else { return true } }
        if meaningful.isEmpty { return .empty }
        var locs: [Int] = [], segs: [Int] = [], label: String?
        var outOfOrder: String?
        for item in meaningful {
            switch item {
            case .loc(let v):
                if !segs.isEmpty || label != nil { outOfOrder = outOfOrder ?? "a <loc> token after the <seg> tokens or the label" }
                locs.append(v)
            case .seg(let v):
                if locs.isEmpty { outOfOrder = outOfOrder ?? "a <seg> token before the box" }
                if label != nil { outOfOrder = outOfOrder ?? "a <seg> token after the label" }
                segs.append(v)
            case .text(let t):
                if label != nil || (locs.isEmpty && segs.isEmpty) { outOfOrder = outOfOrder ?? "text before the box" }
                label = (label ?? "") + t
            }
        }
        if locs.isEmpty && segs.isEmpty { return .malformed("text without a box") }
        if locs.isEmpty { return .malformed("\(segs.count) <seg> token\(segs.count == 1 ? "" : "s") without a box") }
        if locs.count != 4 { return .malformed("\(locs.count) <loc> token\(locs.count == 1 ? "" : "s"), a box needs 4") }
        if let outOfOrder { return .malformed(outOfOrder) }
        if !segs.isEmpty && segs.count != codesPerMask {
            return .malformed("\(segs.count) <seg> token\(segs.count == 1 ? "" : "s"), a mask needs \(codesPerMask)")
        }
        if let bad = locs.first(where: { $0 >= bins }) { return .malformed("location bin \(bad) is outside 0...\(bins - 1)") }
        if locs[0] > locs[2] || locs[1] > locs[3] {
            return .malformed("box bins out of order (y0 \(locs[0]), x0 \(locs[1]), y1 \(locs[2]), x1 \(locs[3]))")
        }
        if let bad = segs.first(where: { $0 >= codebookSize }) {
            return .malformed("seg code \(bad) is outside the codebook (0..<\(codebookSize))")
        }
        let text = (label ?? "").taskTrimmed
        if text.contains(where: { $0 == "<" || $0 == ">" }) { return .malformed("the label contains '<' or '>'") }
        return .object(bins: locs, codes: segs.isEmpty ? nil : segs, label: text)
    }

    static func isBlank<S: StringProtocol>(_ s: S) -> Bool { s.unicodeScalars.allSatisfy(\.properties.isWhitespace) }

    /// A piece as text for problem messages, shortened.
    static func quote(_ piece: [Item]) -> String {
        let s = piece.map(\.source).joined().taskTrimmed
        let shown = s.count > 120 ? String(s.prefix(117)) + "…" : s
        return "\"" + shown + "\""
    }
}

extension String {
    fileprivate var taskTrimmed: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }
}
