// JPEG and PNG: CImageCodecs (libjpeg-turbo / libpng behind setjmp), PNG chunk reading, and the
// Pillow-compatible conversion to RGB. Images over 1 megapixel are refused before decoding, as the
// real decoder refuses over 64 (keeps each input fast).
import PaliImage

let decoder = ImageDecoder(maxPixels: 1 << 20)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? decoder.header(data: bytes, name: "fuzz")
    if let image = try? decoder.decode(data: bytes, name: "fuzz") {
        precondition(image.pixels.count == image.width * image.height * 3)
    }
    return 0
}
