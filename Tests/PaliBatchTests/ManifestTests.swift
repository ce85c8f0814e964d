// Manifests: JSONL and CSV parsing, errors naming file and line, duplicate ids, image paths and the
// image root, folders of images, and streaming of large files.
import Foundation
import Testing
@testable import PaliBatch

private func readAll(_ source: ManifestSource, _ options: ManifestOptions = ManifestOptions()) throws -> [ManifestEntry] {
    let reader = try ManifestReader(source, options: options)
    var entries: [ManifestEntry] = []
    while let entry = try reader.next() { entries.append(entry) }
    return entries
}

/// The ManifestError thrown by `body`, or nil (recording an issue) when it throws none or another kind.
private func manifestError(_ body: () throws -> Void) -> ManifestError? {
    do {
        try body()
        Issue.record("no error thrown")
    } catch let error as ManifestError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
    }
    return nil
}

// MARK: JSONL

@Test func jsonlEntriesCarryIdsPathsPromptsAndExtrasInOrder() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let manifest = try dir.write("jobs.jsonl", """
        {"id": "a1", "image": "imgs/a1.jpg", "prompt": "caption en", "z": 1.50, "a": {"k": [1, "x"]}}

        {"image": "b.png", "id": 17, "prompt": "ocr"}
        {"id": "c", "image": "/data/c.jpg", "prompt": "detect cat"}
        """)
    let entries = try readAll(.file(manifest, .jsonl))
    #expect(entries.map(\.id) == ["a1", "17", "c"])
    #expect(entries.map(\.line) == [1, 3, 4])
    #expect(entries.map(\.prompt) == ["caption en", "ocr", "detect cat"])
    #expect(entries[0].image == "imgs/a1.jpg")
    let base = PathResolver.canonical(dir.path)
    #expect(entries[0].imagePath == base + "/imgs/a1.jpg")
    #expect(entries[1].imagePath == base + "/b.png")
    #expect(entries[2].imagePath == "/data/c.jpg")
    #expect(entries.allSatisfy { $0.pathError == nil })
    #expect(entries[0].extra.map(\.0) == ["z", "a"])
    #expect(entries[0].extra[0].1 == .number("1.50"))
    #expect(entries[0].extra[1].1.encoded == #"{"k":[1,"x"]}"#)
    #expect(entries[1].extra.isEmpty)
    #expect(try ManifestReader.validate(.file(manifest, .jsonl), options: ManifestOptions()) == 3)
}

@Test func defaultPromptFillsMissingPromptsOnly() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let manifest = try dir.write("jobs.jsonl", """
        {"id": "a", "image": "a.jpg"}
        {"id": "b", "image": "b.jpg", "prompt": "ocr"}
        {"id": "c", "image": "c.jpg", "prompt": ""}
        {"id": "d", "image": "d.jpg", "prompt": null}
        """)
    let entries = try readAll(.file(manifest, .jsonl), ManifestOptions(defaultPrompt: "caption en"))
    // "" is an empty prefix (a valid PaliGemma prompt), kept as written.
    #expect(entries.map(\.prompt) == ["caption en", "ocr", "", "caption en"])

    let error = manifestError { _ = try readAll(.file(manifest, .jsonl)) }
    #expect(error == .malformedLine(path: manifest.path, line: 1,
                                    reason: "missing \"prompt\" and no default prompt was given",
                                    excerpt: #"{"id": "a", "image": "a.jpg"}"#))
}

@Test(arguments: [
    (#"{"id": "a", "image": "a.jpg", "prompt": "p"#, "not valid JSON"),
    (#"["a", "a.jpg"]"#, "expected a JSON object, found an array"),
    (#"{"image": "a.jpg", "prompt": "p"}"#, "missing \"id\""),
    (#"{"id": true, "image": "a.jpg", "prompt": "p"}"#, "\"id\" must be a string or a number, found a boolean"),
    (#"{"id": "", "image": "a.jpg", "prompt": "p"}"#, "\"id\" is empty"),
    (#"{"id": "a", "prompt": "p"}"#, "missing \"image\""),
    (#"{"id": "a", "image": 3, "prompt": "p"}"#, "\"image\" must be a string, found a number"),
    (#"{"id": "a", "image": "", "prompt": "p"}"#, "\"image\" is empty"),
    (#"{"id": "a", "image": "a.jpg", "prompt": ["p"]}"#, "\"prompt\" must be a string, found an array"),
    (#"{"id": "a", "id": "b", "image": "a.jpg", "prompt": "p"}"#, "duplicate key"),
])
func malformedJSONLLineIsNamedByLine(_ line: String, _ reason: String) throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let manifest = try dir.write("jobs.jsonl", """
        {"id": "ok1", "image": "1.jpg", "prompt": "p"}
        {"id": "ok2", "image": "2.jpg", "prompt": "p"}

        \(line)
        {"id": "ok3", "image": "3.jpg", "prompt": "p"}
        """)
    let error = manifestError { _ = try ManifestReader.validate(.file(manifest, .jsonl), options: ManifestOptions()) }
    guard case .malformedLine(let path, let number, let why, let excerpt)? = error else {
        Issue.record("expected malformedLine, got \(String(describing: error))")
        return
    }
    #expect(path == manifest.path)
    #expect(number == 4)
    #expect(why.contains(reason), "\(why)")
    #expect(excerpt == line)
    #expect(error!.description.hasPrefix("\(manifest.path):4: "))
    #expect(error!.line == 4)
}

@Test func duplicateIDNamesBothLines() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let manifest = try dir.write("jobs.jsonl", """
        {"id": "a", "image": "a.jpg", "prompt": "p"}
        {"id": "dup", "image": "b.jpg", "prompt": "p"}
        {"id": "c", "image": "c.jpg", "prompt": "p"}

        {"id": "dup", "image": "d.jpg", "prompt": "q"}
        """)
    let error = manifestError { _ = try ManifestReader.validate(.file(manifest, .jsonl), options: ManifestOptions()) }
    #expect(error == .duplicateID(path: manifest.path, id: "dup", line: 5, firstLine: 2))
    #expect(error?.description.contains("jobs.jsonl:5: id \"dup\" is already used on line 2") == true)
    // A number id and the same text as a string are the same id.
    let numbers = try dir.write("n.jsonl", """
        {"id": 7, "image": "a.jpg", "prompt": "p"}
        {"id": "7", "image": "b.jpg", "prompt": "p"}
        """)
    #expect(manifestError { _ = try ManifestReader.validate(.file(numbers, .jsonl), options: ManifestOptions()) }
            == .duplicateID(path: numbers.path, id: "7", line: 2, firstLine: 1))
}

@Test func jsonlWithBOMAndCRLFAndNoFinalNewline() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let text = "{\"id\": \"a\", \"image\": \"a.jpg\", \"prompt\": \"p\"}\r\n\r\n"
        + "{\"id\": \"b\", \"image\": \"b.jpg\", \"prompt\": \"q\"}"
    let manifest = try dir.write("jobs.jsonl", bytes: [0xEF, 0xBB, 0xBF] + Array(text.utf8))
    let entries = try readAll(.file(manifest, .jsonl))
    #expect(entries.map(\.id) == ["a", "b"])
    #expect(entries.map(\.line) == [1, 3])
    #expect(entries.map(\.prompt) == ["p", "q"])
}

@Test func invalidUTF8IsAMalformedLine() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let good = Array("{\"id\": \"a\", \"image\": \"a.jpg\", \"prompt\": \"p\"}\n".utf8)
    let bad = Array("{\"id\": \"b\", \"image\": \"b".utf8) + [0xFF] + Array(".jpg\", \"prompt\": \"p\"}\n".utf8)
    let manifest = try dir.write("jobs.jsonl", bytes: good + bad)
    let error = manifestError { _ = try readAll(.file(manifest, .jsonl)) }
    #expect(error?.line == 2)
    #expect(error?.description.contains("invalid UTF-8") == true)
}

@Test func missingManifestAndUnknownExtension() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let missing = dir.file("nope.jsonl")
    guard case .unreadable(let path, _)? = manifestError({ _ = try ManifestReader(.file(missing, .jsonl),
                                                                                  options: ManifestOptions()) })
    else { Issue.record("expected unreadable"); return }
    #expect(path == missing.path)
    #expect(manifestError { _ = try ManifestSource.file(dir.file("jobs.txt")) } == .unknownFormat(path: dir.file("jobs.txt").path))
    for (name, format) in [("a.jsonl", ManifestFormat.jsonl), ("a.JSON", .jsonl), ("a.ndjson", .jsonl), ("a.CSV", .csv)] {
        guard case .file(_, let found) = try ManifestSource.file(dir.file(name)) else { Issue.record("\(name)"); continue }
        #expect(found == format, "\(name)")
    }
}

// MARK: CSV

@Test func csvQuotedFieldsNewlinesBOMAndCRLF() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let text = "id,image,prompt,source,note\r\n"
        + "a,imgs/a.jpg,caption en,web,\"plain, with comma\"\r\n"
        + "\r\n"
        + "b,b.png,\"answer en what is \"\"this\"\"?\",scan,\"two\r\nlines\"\r\n"
        + "c,c.jpg,ocr,,\"\"\r\n"
    let manifest = try dir.write("jobs.csv", bytes: [0xEF, 0xBB, 0xBF] + Array(text.utf8))
    let entries = try readAll(try ManifestSource.file(manifest))
    #expect(entries.map(\.id) == ["a", "b", "c"])
    #expect(entries.map(\.line) == [2, 4, 6])
    #expect(entries.map(\.prompt) == ["caption en", "answer en what is \"this\"?", "ocr"])
    #expect(entries[0].extra.map(\.0) == ["source", "note"])
    #expect(entries[0].extra.map(\.1) == [.string("web"), .string("plain, with comma")])
    #expect(entries[1].extra.map(\.1) == [.string("scan"), .string("two\r\nlines")])
    #expect(entries[2].extra.map(\.1) == [.string(""), .string("")])
    #expect(entries[1].imagePath == PathResolver.canonical(dir.path) + "/b.png")
}

@Test func csvWithoutPromptColumnUsesTheDefault() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let manifest = try dir.write("jobs.csv", "image,id\nx.jpg,1\ny.jpg,2\n")
    let entries = try readAll(.file(manifest, .csv), ManifestOptions(defaultPrompt: "caption en"))
    #expect(entries.map(\.id) == ["1", "2"])
    #expect(entries.map(\.image) == ["x.jpg", "y.jpg"])
    #expect(entries.allSatisfy { $0.prompt == "caption en" && $0.extra.isEmpty })
    // Without a default the header itself is refused.
    guard case .badHeader? = manifestError({ _ = try ManifestReader(.file(manifest, .csv), options: ManifestOptions()) })
    else { Issue.record("expected badHeader"); return }
}

@Test func csvHeaderErrors() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    for header in ["id,prompt\n", "id,image,id\n", "id,,image\n", ""] {
        let manifest = try dir.write("h.csv", header + "a,b,c\n")
        let error = manifestError { _ = try ManifestReader(.file(manifest, .csv), options: ManifestOptions()) }
        guard case .badHeader(let path, _)? = error else { Issue.record("\(header): \(String(describing: error))"); continue }
        #expect(path == manifest.path)
        #expect(error?.description.hasPrefix("\(manifest.path):1: ") == true)
    }
    // Names are trimmed: a header written with spaces after commas works.
    let spaced = try dir.write("s.csv", "id, image, prompt\na,a.jpg,p\n")
    #expect(try readAll(.file(spaced, .csv)).map(\.image) == ["a.jpg"])
}

@Test func csvMalformedRecordsNameTheirLine() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let cases: [(String, Int, String)] = [
        ("id,image,prompt\na,a.jpg,p\nb,b.jpg\n", 3, "2 field(s) but the header has 3"),
        ("id,image,prompt\na,a.jpg,p\n\"multi\nline\",b.jpg,p,extra\n", 3, "4 field(s)"),
        ("id,image,prompt\na,a.jpg,p\nb,\"b.jpg,p\nc,c.jpg,p\n", 3, "never closed"),
        ("id,image,prompt\na,a.jpg,p\nb,b\"x\".jpg,p\n", 3, "a quote inside unquoted field 2"),
        ("id,image,prompt\na,a.jpg,p\nb,\"b.jpg\"x,p\n", 3, "after a closing quote"),
        ("id,image,prompt\n,a.jpg,p\n", 2, "empty id"),
        ("id,image,prompt\na,,p\n", 2, "empty image"),
        ("id,image,prompt\na,a.jpg,\n", 2, "empty prompt"),
    ]
    for (text, line, reason) in cases {
        let manifest = try dir.write("m.csv", text)
        let error = manifestError { _ = try ManifestReader.validate(.file(manifest, .csv), options: ManifestOptions()) }
        guard case .malformedLine(let path, let found, let why, _)? = error else {
            Issue.record("\(text.debugDescription): \(String(describing: error))")
            continue
        }
        #expect(path == manifest.path)
        #expect(found == line, "\(text.debugDescription)")
        #expect(why.contains(reason), "\(why)")
    }
}

@Test func csvDuplicateIDAcrossAMultilineRecord() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let manifest = try dir.write("m.csv", "id,image,prompt\nx,a.jpg,\"one\ntwo\"\ny,b.jpg,p\nx,c.jpg,p\n")
    #expect(manifestError { _ = try ManifestReader.validate(.file(manifest, .csv), options: ManifestOptions()) }
            == .duplicateID(path: manifest.path, id: "x", line: 5, firstLine: 2))
}

// MARK: Image paths

@Test func imageRootRejectsEscapesPerEntry() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let root = dir.file("data")
    try FileManager.default.createDirectory(at: root.appendingPathComponent("imgs"), withIntermediateDirectories: true)
    try dir.write("secret.jpg", "x")
    try dir.write("data/imgs/real.jpg", "x")
    // A symlink inside the root that points outside it, and one that stays inside.
    try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("link.jpg").path,
                                               withDestinationPath: dir.file("secret.jpg").path)
    try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("inner.jpg").path,
                                               withDestinationPath: root.appendingPathComponent("imgs/real.jpg").path)
    let manifest = try dir.write("data/jobs.jsonl", """
        {"id": "ok", "image": "imgs/real.jpg", "prompt": "p"}
        {"id": "dotdot", "image": "../secret.jpg", "prompt": "p"}
        {"id": "sneaky", "image": "imgs/../../secret.jpg", "prompt": "p"}
        {"id": "inside", "image": "imgs/../imgs/missing.jpg", "prompt": "p"}
        {"id": "absolute", "image": "/etc/passwd", "prompt": "p"}
        {"id": "absinside", "image": "\(root.path)/imgs/real.jpg", "prompt": "p"}
        {"id": "symlink", "image": "link.jpg", "prompt": "p"}
        {"id": "innerlink", "image": "inner.jpg", "prompt": "p"}
        """)
    let entries = try readAll(.file(manifest, .jsonl), ManifestOptions(imageRoot: root))
    let byID = Dictionary(uniqueKeysWithValues: entries.map { ($0.id, $0) })
    let realRoot = PathResolver.canonical(root.path)
    #expect(byID["ok"]?.imagePath == realRoot + "/imgs/real.jpg")
    #expect(byID["inside"]?.imagePath == realRoot + "/imgs/missing.jpg")
    #expect(byID["absinside"]?.imagePath == realRoot + "/imgs/real.jpg")
    #expect(byID["innerlink"]?.imagePath == realRoot + "/imgs/real.jpg")
    for id in ["ok", "inside", "absinside", "innerlink"] { #expect(byID[id]?.pathError == nil, "\(id)") }
    for id in ["dotdot", "sneaky", "absolute", "symlink"] {
        let entry = try #require(byID[id])
        #expect(entry.imagePath == nil, "\(id)")
        #expect(entry.pathError?.contains("image path \(entry.image)") == true, "\(id)")
        #expect(entry.pathError?.hasSuffix("escapes --image-root \(root.path)") == true, "\(id): \(entry.pathError ?? "")")
    }
    // Without a root nothing is refused, and paths come out resolved.
    let open = try readAll(.file(manifest, .jsonl))
    #expect(open.allSatisfy { $0.pathError == nil && $0.imagePath != nil })
    #expect(open.first { $0.id == "symlink" }?.imagePath == PathResolver.canonical(dir.path) + "/secret.jpg")
    #expect(open.first { $0.id == "dotdot" }?.imagePath == PathResolver.canonical(dir.path) + "/secret.jpg")
}

@Test func lexicalNormalization() {
    #expect(PathResolver.normalize("/a/./b//c/../d") == "/a/b/d")
    #expect(PathResolver.normalize("/../x") == "/x")
    #expect(PathResolver.isInside("/data/x", "/data"))
    #expect(!PathResolver.isInside("/database/x", "/data"))
    #expect(PathResolver.isInside("/anything", "/"))
}

// MARK: Folders

@Test func directorySourceListsImagesByName() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    for name in ["b.png", "a.JPG", "c.jpeg", "notes.txt", ".hidden.jpg", "Z.Png", "img.jpg.bak"] {
        try dir.write(name, "x")
    }
    try FileManager.default.createDirectory(at: dir.file("folder.jpg"), withIntermediateDirectories: true)
    try dir.write("sub/inner.jpg", "x")
    let entries = try readAll(.directory(dir.url, prompt: "caption en"))
    #expect(entries.map(\.id) == ["Z.Png", "a.JPG", "b.png", "c.jpeg"])
    #expect(entries.map(\.line) == [1, 2, 3, 4])
    #expect(entries.allSatisfy { $0.prompt == "caption en" && $0.extra.isEmpty && $0.image == $0.id })
    #expect(entries[1].imagePath == PathResolver.canonical(dir.path) + "/a.JPG")
    #expect(try ManifestReader.validate(.directory(dir.url, prompt: "p"), options: ManifestOptions()) == 4)
    guard case .unreadable? = manifestError({ _ = try readAll(.directory(dir.file("missing"), prompt: "p")) })
    else { Issue.record("expected unreadable"); return }
}

// MARK: Streaming

@Test func lineReaderHandlesEveryChunkBoundary() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let text = "\u{FEFF}one\r\ntwo\n\nthré\r\n\r\nlast"
    let file = try dir.write("lines.txt", text)
    for chunk in 1...9 {
        let reader = try LineReader(path: file.path, chunkSize: chunk)
        var lines: [String] = []
        var crlfs: [Bool] = []
        while let (bytes, crlf) = try reader.next() {
            lines.append(String(decoding: bytes, as: UTF8.self))
            crlfs.append(crlf)
        }
        #expect(lines == ["one", "two", "", "thré", "", "last"], "chunk \(chunk)")
        #expect(crlfs == [true, false, false, true, true, false], "chunk \(chunk)")
        #expect(reader.lineNumber == 6)
    }
}

@Test func lineLongerThanTheLimitIsAnError() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let file = try dir.write("long.txt", "short\n" + String(repeating: "x", count: 100) + "\n")
    let reader = try LineReader(path: file.path, chunkSize: 16, maxLineBytes: 50)
    #expect(try reader.next()?.bytes == Array("short".utf8))
    #expect(throws: LineReadError.self) { try reader.next() }
}

@Test func largeManifestStreams() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let count = 200_000
    let url = dir.file("big.jsonl")
    #expect(FileManager.default.createFile(atPath: url.path, contents: nil))
    let handle = try FileHandle(forWritingTo: url)
    var chunk = ""
    for i in 0..<count {
        chunk += "{\"id\": \"img-\(i)\", \"image\": \"images/\(i % 1000)/\(i).jpg\", \"prompt\": \"caption en\", \"n\": \(i)}\n"
        if i % 10_000 == 9_999 {
            handle.write(Data(chunk.utf8))
            chunk = ""
        }
    }
    try handle.close()
    #expect(try ManifestReader.validate(.file(url, .jsonl), options: ManifestOptions()) == count)
    let reader = try ManifestReader(.file(url, .jsonl), options: ManifestOptions())
    var seen = 0
    var last: ManifestEntry?
    while let entry = try reader.next() {
        if entry.line != seen + 1 || entry.extra.first?.1 != .int(seen) { Issue.record("entry \(seen)"); break }
        seen += 1
        last = entry
    }
    #expect(seen == count)
    #expect(last?.id == "img-\(count - 1)")
    #expect(last?.imagePath?.hasSuffix("/images/999/\(count - 1).jpg") == true)
}
