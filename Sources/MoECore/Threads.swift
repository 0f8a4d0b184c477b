import CKernels
import COpenBLAS
import Foundation

/// Owns the compute threads of this process. OpenBLAS runs single-threaded and our pool splits every product, so the
/// two never compete for cores (and no BLAS thread spins while our pool works).
public enum ComputeThreads {
    nonisolated(unsafe) private static var configured = false

    /// Threads to use: `MOE_THREADS` if set, else the number of online cores.
    public static var defaultCount: Int {
        if let s = ProcessInfo.processInfo.environment["MOE_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }

    public static func configure(count: Int = defaultCount) {
        openblas_set_num_threads(1)
        kern_threads_init(Int32(max(1, count)))
        configured = true
    }

    public static func ensureConfigured() {
        if !configured { configure() }
    }

    public static var count: Int { Int(kern_threads_count()) }

    public static var isa: String { String(cString: kern_isa_name(kern_isa_active())) }
}

/// Runs `body` over [0, n) in contiguous chunks on the compute pool.
public func parallelFor(_ n: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    if n <= 0 { return }
    withoutActuallyEscaping(body) { escapable in
        var box = escapable
        withUnsafeMutablePointer(to: &box) { ctx in
            kern_parallel_for(n, max(1, grain), { raw, b, e in
                let f = raw!.assumingMemoryBound(to: ((Range<Int>) -> Void).self).pointee
                f(Int(b)..<Int(e))
            }, UnsafeMutableRawPointer(ctx))
        }
    }
}
