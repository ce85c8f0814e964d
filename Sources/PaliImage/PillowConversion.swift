// Raw decoded samples -> 8-bit RGB, bit-for-bit as Pillow 13 opens a file and transformers 5.23
// `convert_to_rgb` (image_transforms.py) converts it:
//
//   has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
//   if has_alpha: RGBA = image.convert("RGBA"); RGB = alpha_composite(white, RGBA).convert("RGB")
//   else:         RGB = image.convert("RGB")
//
// Pillow's modes per file layout (PngImagePlugin._MODES, JpegImagePlugin.SOF) and the
// conversions used (libImaging/Convert.c, AlphaComposite.c), all verified against Pillow 13.0.0
// by Tests/Oracle/make_image_goldens.py:
//   JPEG 1 comp  -> "L"; L->RGB replicates.
//   JPEG 3 comp  -> "RGB" (libjpeg converts YCbCr).
//   JPEG 4 comp  -> "CMYK", always unpacked as "CMYK;I" (inverted, "assume adobe conventions"),
//                   then cmyk2rgb: nk = 255 - K; R = clip(nk - MULDIV255(C, nk)), same for G, B.
//   PNG gray 1   -> "1" (0/255);  2/4/8 -> "L" (scaled by 85 / 17 / 1);  16 -> "I;16", whose
//                   conversion to RGB is min(v, 255) (I16_RGB: high byte != 0 -> 255).
//   PNG RGB 16, RGBA 16, LA 16 -> the high byte of every sample ("RGB;16B", "RGBA;16B", "LA;16B").
//   PNG palette  -> "P"; indices past the PLTE entries are black.
//   tRNS         -> info["transparency"]: palette: per-index alpha (missing entries 255);
//                   gray/RGB: a colour; a pixel is transparent when its converted 8-bit value
//                   equals the low byte of each tRNS sample (Convert.c rgbT2a masks with 0xff);
//                   for 1-bit gray the colour is 255 if the tRNS value is non-zero, else 0.
//   Compositing onto opaque white (AlphaComposite.c, 7 fractional bits): a == 0 -> 255, else
//     coef1 = a * 128, coef2 = (255 - a) * 128, t = v * coef1 + 255 * coef2 + (0x80 << 7),
//     out = (((t >> 8) + t) >> 8) >> 7.
import CImageCodecs

enum PillowConversion {
    /// The mode string Pillow 13 gives a file with this header.
    static func pillowMode(_ info: cimg_info) -> String {
        if info.format == Int32(CIMG_FORMAT_JPEG) {
            switch info.channels {
            case 1: return "L"
            case 3: return "RGB"
            default: return "CMYK"
            }
        }
        switch (info.color_type, info.bit_depth) {
        case (0, 1): return "1"
        case (0, 16): return "I;16"
        case (0, _): return "L"
        case (2, _): return "RGB"
        case (3, _): return "P"
        case (4, 8): return "LA"
        default: return "RGBA"  // gray+alpha 16-bit opens as RGBA, RGBA 8/16
        }
    }

    /// `compositeOnWhite[a << 8 | v]`: channel value v with alpha a over opaque white.
    static let compositeOnWhite: [UInt8] = {
        var table = [UInt8](repeating: 255, count: 256 * 256)
        for a in 1..<256 {
            let blend = 255 * (255 - a)  // dst alpha 255
            let outa255 = a * 255 + blend
            let coef1 = a * 255 * 255 * 128 / outa255
            let coef2 = 255 * 128 - coef1
            for v in 0..<256 {
                let t = v * coef1 + 255 * coef2 + (0x80 << 7)
                table[a << 8 | v] = UInt8((((t >> 8) + t) >> 8) >> 7)
            }
        }
        return table
    }()

    // MARK: JPEG

    static func jpegToRGB(_ raw: [UInt8], width: Int, height: Int, channels: Int) -> RGBImage {
        let n = width * height
        switch channels {
        case 3:
            return RGBImage(width: width, height: height, pixels: raw)
        case 1:
            return RGBImage(width: width, height: height, pixels: expandGray(raw, count: n))
        default:
            let rgb = [UInt8](unsafeUninitializedCapacity: n * 3) { out, initialized in
                raw.withUnsafeBufferPointer { cmyk in
                    for i in 0..<n {
                        // "CMYK;I" inverts every stored byte; cmyk2rgb uses nk = 255 - K.
                        let nk = Int(cmyk[i * 4 + 3])  // = 255 - (255 - stored K)
                        for c in 0..<3 {
                            let inverted = 255 - Int(cmyk[i * 4 + c])
                            let tmp = inverted * nk + 128
                            let muldiv = ((tmp >> 8) + tmp) >> 8
                            out[i * 3 + c] = UInt8(clamping: nk - muldiv)
                        }
                    }
                }
                initialized = n * 3
            }
            return RGBImage(width: width, height: height, pixels: rgb)
        }
    }

    // MARK: PNG

    static func pngToRGB(_ raw: [UInt8], info: cimg_info, chunks: PNGChunks, name: String) throws -> RGBImage {
        let width = Int(info.width), height = Int(info.height), n = width * height
        let depth = Int(info.bit_depth)
        let wide = depth == 16
        switch info.color_type {
        case 0:  // gray: "1", "L" or "I;16"
            var gray = [UInt8](repeating: 0, count: n)
            raw.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    switch depth {
                    case 1: gray[i] = src[i] == 0 ? 0 : 255
                    case 2: gray[i] = src[i] &* 85
                    case 4: gray[i] = src[i] &* 17
                    case 8: gray[i] = src[i]
                    default: gray[i] = src[2 * i] == 0 ? src[2 * i + 1] : 255
                    }
                }
            }
            var rgb = expandGray(gray, count: n)
            if let trns = chunks.transparency {
                guard trns.count >= 2 else { throw shortTRNS(name, trns.count, need: 2) }
                let value = Int(trns[0]) << 8 | Int(trns[1])
                let key: UInt8 = depth == 1 ? (value != 0 ? 255 : 0) : UInt8(value & 0xff)
                for i in 0..<n where gray[i] == key {
                    rgb[i * 3] = 255; rgb[i * 3 + 1] = 255; rgb[i * 3 + 2] = 255
                }
            }
            return RGBImage(width: width, height: height, pixels: rgb)

        case 2:  // "RGB"
            var rgb = wide ? highBytes(raw, count: n * 3) : raw
            if let trns = chunks.transparency {
                guard trns.count >= 6 else { throw shortTRNS(name, trns.count, need: 6) }
                let key = (trns[1], trns[3], trns[5])  // low bytes of the 16-bit samples
                for i in 0..<n where rgb[i * 3] == key.0 && rgb[i * 3 + 1] == key.1 && rgb[i * 3 + 2] == key.2 {
                    rgb[i * 3] = 255; rgb[i * 3 + 1] = 255; rgb[i * 3 + 2] = 255
                }
            }
            return RGBImage(width: width, height: height, pixels: rgb)

        case 3:  // "P"
            var lut = [UInt8](repeating: 0, count: 256 * 3)
            let palette = chunks.palette ?? []
            for i in 0..<min(256, palette.count / 3) {
                lut[i * 3] = palette[i * 3]; lut[i * 3 + 1] = palette[i * 3 + 1]; lut[i * 3 + 2] = palette[i * 3 + 2]
            }
            if let trns = chunks.transparency {
                let table = compositeOnWhite
                for i in 0..<min(256, trns.count) {
                    let a = Int(trns[i]) << 8
                    for c in 0..<3 { lut[i * 3 + c] = table[a | Int(lut[i * 3 + c])] }
                }
            }
            let rgb = [UInt8](unsafeUninitializedCapacity: n * 3) { out, initialized in
                raw.withUnsafeBufferPointer { src in
                    lut.withUnsafeBufferPointer { lut in
                        for i in 0..<n {
                            let p = Int(src[i]) * 3
                            out[i * 3] = lut[p]; out[i * 3 + 1] = lut[p + 1]; out[i * 3 + 2] = lut[p + 2]
                        }
                    }
                }
                initialized = n * 3
            }
            return RGBImage(width: width, height: height, pixels: rgb)

        case 4:  // "LA" (8-bit) or "RGBA" from "LA;16B"
            let la = wide ? highBytes(raw, count: n * 2) : raw
            let rgb = composite(count: n) { i in (la[i * 2], la[i * 2], la[i * 2], la[i * 2 + 1]) }
            return RGBImage(width: width, height: height, pixels: rgb)

        default:  // "RGBA"
            let rgba = wide ? highBytes(raw, count: n * 4) : raw
            let rgb = [UInt8](unsafeUninitializedCapacity: n * 3) { out, initialized in
                rgba.withUnsafeBufferPointer { src in
                    compositeOnWhite.withUnsafeBufferPointer { table in
                        for i in 0..<n {
                            let a = Int(src[i * 4 + 3]) << 8
                            out[i * 3] = table[a | Int(src[i * 4])]
                            out[i * 3 + 1] = table[a | Int(src[i * 4 + 1])]
                            out[i * 3 + 2] = table[a | Int(src[i * 4 + 2])]
                        }
                    }
                }
                initialized = n * 3
            }
            return RGBImage(width: width, height: height, pixels: rgb)
        }
    }

    // MARK: Helpers

    static func expandGray(_ gray: [UInt8], count n: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: n * 3) { out, initialized in
            gray.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    let v = src[i]
                    out[i * 3] = v; out[i * 3 + 1] = v; out[i * 3 + 2] = v
                }
            }
            initialized = n * 3
        }
    }

    /// The high (first, big-endian) byte of each 16-bit sample.
    static func highBytes(_ raw: [UInt8], count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            raw.withUnsafeBufferPointer { src in
                for i in 0..<count { out[i] = src[2 * i] }
            }
            initialized = count
        }
    }

    static func composite(count n: Int, _ pixel: (Int) -> (UInt8, UInt8, UInt8, UInt8)) -> [UInt8] {
        let table = compositeOnWhite
        var out = [UInt8](repeating: 0, count: n * 3)
        for i in 0..<n {
            let (r, g, b, alpha) = pixel(i)
            let a = Int(alpha) << 8
            out[i * 3] = table[a | Int(r)]; out[i * 3 + 1] = table[a | Int(g)]; out[i * 3 + 2] = table[a | Int(b)]
        }
        return out
    }

    static func shortTRNS(_ name: String, _ count: Int, need: Int) -> ImageError {
        .corrupt(path: name, reason: "tRNS chunk has \(count) bytes, this colour type needs \(need)")
    }
}

/// The PNG chunks Pillow reads that libpng's raw pixels do not carry: the palette and the
/// transparency chunk, exactly as stored (the last of each before the first IDAT, as Pillow).
struct PNGChunks {
    var palette: [UInt8]?
    var transparency: [UInt8]?

    init(_ data: UnsafeBufferPointer<UInt8>, name: String) throws {
        var offset = 8
        while offset + 8 <= data.count {
            let length = Int(data[offset]) << 24 | Int(data[offset + 1]) << 16 | Int(data[offset + 2]) << 8
                | Int(data[offset + 3])
            let type = String(decoding: data[(offset + 4)..<(offset + 8)], as: UTF8.self)
            let start = offset + 8
            guard length >= 0, start + length <= data.count else { break }
            if type == "IDAT" { break }
            if type == "PLTE" { palette = Array(data[start..<(start + length)]) }
            if type == "tRNS" { transparency = Array(data[start..<(start + length)]) }
            offset = start + length + 4
        }
    }
}
