// Slow, obviously correct reference kernels. Every fast kernel in PaliTensor is tested against its
// reference here on random shapes; they are public so benchmarks and other modules' tests can use them.
import Foundation

public enum Reference {}
