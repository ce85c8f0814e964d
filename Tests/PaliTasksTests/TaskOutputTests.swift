// Task outputs against the goldens of Tests/Oracle/make_task_goldens.py: parsing (boxes, labels,
// problems), COCO RLE (pycocotools), Pillow's "L" bicubic resize, and the demo's mask paste.
import Foundation
import PaliGeneration
import PaliImage
import PaliJSON
import PaliModels
import PaliTensor
import Testing

@Suite struct TaskParseTests {
    @Test(arguments: TaskGoldens.shared.parse.map(\.name))
    func parseMatchesGolden(name: String) throws {
        let g = try #require(TaskGoldens.shared.parse.first { $0.name == name })
        let r = TaskOutput.parse(text: g.text, imageWidth: g.width, imageHeight: g.height, maskDecoder: nil)
        #expect(r.hasTaskTokens == g.hasTaskTokens)
        #expect(r.objects.map(\.label) == g.objects.map(\.label))
        #expect(r.objects.map(\.box) == g.objects.map(\.box))
        #expect(r.objects.map(\.bins) == g.objects.map(\.bins))
        #expect(r.objects.map(\.codes) == g.objects.map(\.codes))
        #expect(r.problems.count == g.problems, "\(r.problems)")
        #expect(r.objects.allSatisfy { $0.mask == nil })
        #expect((r.jsonFields == nil) == !g.hasTaskTokens)
    }

    @Test func problemsSayWhatIsWrong() {
        func problems(_ text: String) -> [String] {
            TaskOutput.parse(text: text, imageWidth: 100, imageHeight: 100, maskDecoder: nil).problems
        }
        #expect(problems("<loc0001><loc0002><loc0003> cat")[0].contains("3 <loc> tokens, a box needs 4"))
        #expect(problems(String(repeating: "<seg001>", count: 16) + " cat")[0].contains("16 <seg> tokens without a box"))
        #expect(problems("<loc0001><loc0002><loc0003><loc0004>" + String(repeating: "<seg001>", count: 15))[0]
            .contains("15 <seg> tokens, a mask needs 16"))
        #expect(problems("<loc0009><loc0002><loc0003><loc0004> x")[0].contains("out of order"))
        #expect(problems("<loc0001><loc0002><loc0003><loc0004> x ; y")[0].contains("text without a box"))
        let p = problems("<loc0001><loc0002><loc0003><loc0004> ok ; <loc0001><loc0002> bad")
        #expect(p.count == 1 && p[0].hasPrefix("object 2 (\"<loc0001><loc0002> bad\")"))
    }

    /// Random token soup never crashes, and every kept object is well-formed.
    @Test func randomTextNeverCrashes() {
        var rng = SplitMix64(seed: 11)
        let parts = ["<loc0100>", "<loc1023>", "<loc0000>", "<seg005>", "<seg127>", "<seg999>", " ", " ; ", ";", "cat",
                     "<", ">", "<loc", "<seg12>", "é", "\n", "<loc99999>", "<eos>"]
        for _ in 0..<2000 {
            let n = Int.random(in: 0..<40, using: &rng)
            let text = (0..<n).map { _ in parts[Int.random(in: 0..<parts.count, using: &rng)] }.joined()
            let w = Int.random(in: 1...500, using: &rng), h = Int.random(in: 1...500, using: &rng)
            let r = TaskOutput.parse(text: text, imageWidth: w, imageHeight: h, maskDecoder: nil)
            for o in r.objects {
                #expect(o.box[0] <= o.box[2] && o.box[1] <= o.box[3] && o.box[2] <= w && o.box[3] <= h)
                #expect(o.codes == nil || o.codes!.count == 16)
                #expect(!o.label.contains(";") && !o.label.contains("<"))
            }
            #expect((try? JSONSerialization.jsonObject(with: Data(r.objectsJSON.encoded.utf8))) != nil)
        }
    }

    @Test func jsonRendering() throws {
        let r = TaskOutput.parse(text: "<loc0000><loc0000><loc0512><loc0512> a \"b\" \\ c/d ; <loc0000><loc0000><loc0001><loc0001> x",
                                 imageWidth: 10, imageHeight: 20, maskDecoder: nil)
        #expect(r.objectsJSON.encoded == #"[{"label":"a \"b\" \\ c/d","box":[0,0,5,10]},{"label":"x","box":[0,0,0,0]}]"#)
        let parsed = try JSONSerialization.jsonObject(with: Data(r.objectsJSON.encoded.utf8)) as! [[String: Any]]
        #expect(parsed[0]["label"] as? String == "a \"b\" \\ c/d")
        #expect(r.problemsJSON.encoded == "[]")
        #expect(r.jsonFields?.map(\.0) == ["objects"])
        let bad = TaskOutput.parse(text: "<loc0001> \u{1}", imageWidth: 10, imageHeight: 20, maskDecoder: nil)
        #expect(bad.jsonFields?.map(\.0) == ["objects", "problems"])
        #expect(bad.problemsJSON.encoded.contains("\\u0001"))
    }

    @Test func pixelRoundingIsPythonRound() {
        // round(bin / 1024 · size) with ties to even, as Python's round.
        #expect(TaskOutput.pixel(512, 1) == 0)     // 0.5 → 0
        #expect(TaskOutput.pixel(512, 3) == 2)     // 1.5 → 2
        #expect(TaskOutput.pixel(512, 5) == 2)     // 2.5 → 2
        #expect(TaskOutput.pixel(1023, 1024) == 1023)
        #expect(TaskOutput.pixel(1023, 640) == 639)  // 639.375
        #expect(TaskOutput.pixel(0, 640) == 0)
    }
}

@Suite struct COCORLETests {
    @Test(arguments: Array(TaskGoldens.shared.rle.indices))
    func matchesPycocotools(index: Int) throws {
        let g = TaskGoldens.shared.rle[index]
        let mask = unpackBits(g.bits, count: g.height * g.width)
        let rle = COCORLE(mask: mask, height: g.height, width: g.width)
        #expect(rle.size == [g.height, g.width])
        #expect(rle.counts == g.counts, "\(g.height)×\(g.width)")
        #expect(COCORLE(size: [g.height, g.width], counts: g.counts).decode() == mask)
        #expect(COCORLE.decompress(g.counts) == COCORLE.runs(mask: mask, height: g.height, width: g.width))
    }

    @Test func malformedCountsDecodeToNil() {
        #expect(COCORLE(size: [2, 2], counts: "2").decode() == nil)      // covers 2 of 4 pixels
        #expect(COCORLE(size: [2, 2], counts: "\u{7F}").decode() == nil) // outside the alphabet
        #expect(COCORLE(size: [2, 2], counts: "P").decode() == nil)      // unfinished value (0x20 set)
        #expect(COCORLE(size: [2], counts: "4").decode() == nil)
        #expect(COCORLE(size: [2, 2], counts: "4").decode() == [0, 0, 0, 0])
        #expect(COCORLE(size: [2, 2], counts: "04").decode() == [1, 1, 1, 1])
    }
}

@Suite struct MaskPasteTests {
    @Test(arguments: Array(TaskGoldens.shared.resize.indices))
    func grayBicubicMatchesPillow(index: Int) {
        let g = TaskGoldens.shared.resize[index]
        let image = GrayImage(width: 64, height: 64, pixels: base64Bytes(g.input))
        let out = PillowResize.bicubic(image, width: g.width, height: g.height)
        #expect(out.width == g.width && out.height == g.height)
        #expect(out.pixels == base64Bytes(g.output), "64×64 → \(g.width)×\(g.height)")
    }

    /// The gray resize equals the RGB one on an image whose three channels are the gray one.
    @Test func grayEqualsRGBChannel() {
        var rng = SplitMix64(seed: 5)
        let gray = GrayImage(width: 13, height: 9, pixels: (0..<117).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let rgb = RGBImage(width: 13, height: 9, pixels: gray.pixels.flatMap { [$0, $0, $0] })
        for (w, h) in [(40, 3), (3, 40), (13, 20), (7, 9), (1, 1)] {
            let a = PillowResize.bicubic(gray, width: w, height: h)
            let b = PillowResize.bicubicReference(rgb, width: w, height: h)
            #expect(a.pixels == stride(from: 0, to: b.pixels.count, by: 3).map { b.pixels[$0] }, "\(w)×\(h)")
        }
    }

    @Test(arguments: Array(TaskGoldens.shared.paste.indices))
    func pasteMatchesDemo(index: Int) {
        let g = TaskGoldens.shared.paste[index]
        let logits = Tensor(shape: [64, 64], values: base64Floats(g.logits))
        let mask = MaskPaste.paste(logits: logits, box: g.box, imageWidth: g.width, imageHeight: g.height)
        #expect(mask.reduce(0) { $0 + Int($1) } == g.area)
        #expect(COCORLE(mask: mask, height: g.height, width: g.width).counts == g.counts, "box \(g.box) in \(g.width)×\(g.height)")
    }
}

@Suite struct SegmentationParseTests {
    /// With a mask decoder, seg codes become a COCO RLE mask over the whole image, inside the box.
    @Test func masksAreDecodedPastedAndEncoded() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("vae.npz")
        try writeNPZ(randomDecoderArrays(d: 8, seed: 21), to: url)
        let decoder = try MaskDecoder(contentsOf: url)
        let codes = [5, 17, 0, 127, 64, 3, 99, 12, 45, 8, 77, 1, 2, 110, 33, 60]
        let seg = codes.map { String(format: "<seg%03d>", $0) }.joined()
        let text = "<loc0100><loc0200><loc0700><loc0900>" + seg + " blob ; <loc0300><loc0300><loc0300><loc0600>" + seg + " flat"
        let (w, h) = (150, 90)
        let r = TaskOutput.parse(text: text, imageWidth: w, imageHeight: h, maskDecoder: decoder)
        #expect(r.problems.isEmpty)
        #expect(r.objects.count == 2)
        let blob = r.objects[0]
        #expect(blob.box == [29, 9, 132, 62] && blob.codes == codes)
        let mask = try #require(blob.mask?.decode())
        #expect(blob.mask?.size == [h, w])
        let expected = MaskPaste.paste(logits: decoder.decode(codes: codes), box: blob.box, imageWidth: w, imageHeight: h)
        #expect(mask == expected)
        for y in 0..<h { for x in 0..<w where mask[y * w + x] != 0 { #expect((29..<132).contains(x) && (9..<62).contains(y)) } }
        // An empty box (y0 == y1) keeps its object, with an all-zero mask.
        let flat = r.objects[1]
        #expect(flat.box[1] == flat.box[3])
        #expect(flat.mask == COCORLE(mask: [UInt8](repeating: 0, count: w * h), height: h, width: w))
        #expect(r.objectsJSON.encoded.contains("\"mask\":{\"size\":[90,150],\"counts\":"))
    }

    /// A code the decoder's codebook does not have is a problem, not a crash.
    @Test func codesOutsideASmallCodebook() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("vae.npz")
        var arrays = randomDecoderArrays(d: 8, seed: 2)
        var rng = SplitMix64(seed: 1)
        arrays[0] = ("_vq_vae._embedding", randomTensor([32, 8], rng: &rng))
        try writeNPZ(arrays, to: url)
        let decoder = try MaskDecoder(contentsOf: url)
        let text = "<loc0100><loc0200><loc0700><loc0900>" + String(repeating: "<seg040>", count: 16) + " x"
        let r = TaskOutput.parse(text: text, imageWidth: 10, imageHeight: 10, maskDecoder: decoder)
        #expect(r.objects.isEmpty && r.problems.count == 1 && r.problems[0].contains("outside the codebook (0..<32)"))
    }
}
