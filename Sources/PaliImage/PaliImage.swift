// Image decode, PIL-exact bicubic resize, normalisation.
import CImageCodecs
