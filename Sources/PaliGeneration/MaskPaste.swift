// Pasting a decoded 64×64 mask into its box of the original image, as Google's PaliGemma demo
// (the big_vision HF space's `extract_objs`) does (SPEC §5.2):
//   m = clip(logits · 0.5 + 0.5, 0, 1)            float32
//   b = uint8(m · 255)                            truncation
//   r = Pillow BICUBIC resize of b (mode "L") to (x1 − x0) × (y1 − y0)
//   mask = zeros(H, W); mask[y0:y1, x0:x1] = r / 255, only when the box is non-empty
// and foreground = mask > 0.5 (i.e. a resized byte ≥ 128).
import PaliImage
import PaliTensor

public enum MaskPaste {
    /// The 64×64 logits as the demo's 8-bit image: uint8(clip(m·0.5 + 0.5, 0, 1) · 255), in float32.
    public static func bytes(logits: Tensor) -> GrayImage {
        precondition(logits.rank == 2, "mask logits must be [H, W], got \(logits.shape)")
        let values = logits.scalars.map { v -> UInt8 in
            guard !v.isNaN else { return 0 }
            let m = min(max(v * 0.5 + 0.5, 0), 1)
            return UInt8(m * 255)                    // m · 255 ∈ [0, 255]: truncation toward zero
        }
        return GrayImage(width: logits.shape[1], height: logits.shape[0], pixels: values)
    }

    /// The resized mask bytes over the box, row-major H × W (zero outside the box, and everywhere
    /// when the box is empty). `box` is [x0, y0, x1, y1] in pixels, clamped to the image.
    public static func pastedBytes(logits: Tensor, box: [Int], imageWidth w: Int, imageHeight h: Int) -> [UInt8] {
        precondition(box.count == 4, "box must be [x0, y0, x1, y1], got \(box)")
        var out = [UInt8](repeating: 0, count: w * h)
        let x0 = max(0, min(box[0], w)), y0 = max(0, min(box[1], h))
        let x1 = max(0, min(box[2], w)), y1 = max(0, min(box[3], h))
        guard x1 > x0, y1 > y0 else { return out }
        let resized = PillowResize.bicubic(bytes(logits: logits), width: x1 - x0, height: y1 - y0)
        for y in y0..<y1 {
            let src = (y - y0) * resized.width
            for x in x0..<x1 { out[y * w + x] = resized.pixels[src + x - x0] }
        }
        return out
    }

    /// The binary mask (1 = foreground: pasted value / 255 > 0.5), row-major H × W.
    public static func paste(logits: Tensor, box: [Int], imageWidth w: Int, imageHeight h: Int) -> [UInt8] {
        pastedBytes(logits: logits, box: box, imageWidth: w, imageHeight: h).map { $0 >= 128 ? 1 : 0 }
    }
}
