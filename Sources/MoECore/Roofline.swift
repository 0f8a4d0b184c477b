import CKernels
import COpenBLAS
import Foundation

/// Physical limits measured in the same run as a benchmark, so results are reported as a ratio to them.
public enum Roofline {
    /// The mean round trip of a cache line between two compute threads, in ns (the best of `repeats` runs of
    /// `rounds` round trips), or nil with one thread or when no run finished (the pool busy, or the other thread not
    /// running). Every product's hand-over, inputs and outputs cross between the threads at this cost; on a VM it
    /// shows whether the vCPUs share a core complex (tens of ns) or not (hundreds).
    public static func threadRoundTrip(rounds: Int = 20000, repeats: Int = 3) -> Double? {
        var best: Double?
        for _ in 0..<repeats {
            let ns = kern_thread_round_trip_ns(Int32(rounds))
            if ns > 0 { best = min(best ?? ns, ns) }
        }
        return best
    }

    /// STREAM triad bandwidth over the compute pool, in bytes/s (best of `repeats`; counts 3 arrays of `floats` floats,
    /// as STREAM does, not the write-allocate traffic).
    public static func triadBandwidth(floats n: Int = 32 << 20, repeats: Int = 6) -> Double {
        let a = FloatBuffer(count: n), b = FloatBuffer(count: n), c = FloatBuffer(count: n)
        for i in 0..<n { b[i] = 1; c[i] = 2 }
        var best = Double.infinity
        for _ in 0..<repeats {
            let t0 = monotonicSeconds()
            kern_triad_mt(a.pointer, b.pointer, c.pointer, 3, n)
            best = min(best, monotonicSeconds() - t0)
        }
        return Double(3 * n * MemoryLayout<Float>.stride) / best
    }

    /// Read-only bandwidth over the compute pool, in bytes/s (best of `repeats` passes over `floats` floats): what
    /// decode does to its weights, so the decode roofline uses it.
    public static func readBandwidth(floats n: Int = 64 << 20, repeats: Int = 6) -> Double {
        let a = FloatBuffer(count: n)
        for i in 0..<n { a[i] = 1 }
        var best = Double.infinity, sink = 0
        for _ in 0..<repeats {
            let t0 = monotonicSeconds()
            sink &+= Int(kern_read_mt(a.pointer, n))
            best = min(best, monotonicSeconds() - t0)
        }
        precondition(sink > 0)
        return Double(n * MemoryLayout<Float>.stride) / best
    }

    /// Bytes of stored weights per second that one-input-row products in `format` stream from cache: `calls`
    /// products of a `rows` × `cols` matrix (int4 1.2 MB, int8 2.2 MB: within L2 and L3), over the pool as decode's
    /// run, fixed costs per call included; best of `repeats`. What the products' own work allows at this moment,
    /// whatever memory gives: decode cannot stream weights faster, so where this is near the read bandwidth a decode
    /// step is bound by that work (arithmetic, and the two threads' fork, join and hand-overs per product), not by
    /// memory. (On this project's VM the int8/int4 figures drop by about a third in the minutes when the two vCPUs
    /// are far apart, which are the minutes of high read bandwidth; one thread's do not: see README.md.)
    public struct InCacheProducts {
        let w: Matrix
        let x: FloatBuffer, y: FloatBuffer

        /// The matrix is made and converted once; `rate()` samples as often as wanted.
        public init(format: WeightFormat, rows: Int = 2048, cols: Int = 1024) {
            let src = FloatBuffer(count: rows * cols)
            for i in 0..<(rows * cols) { src[i] = Float((i * 7919) % 255) / 255 - 0.5 }
            w = Matrix(src, rows: rows, cols: cols).converted(to: format) ?? Matrix(src, rows: rows, cols: cols)
            x = FloatBuffer(count: cols)
            y = FloatBuffer(count: rows)
            for i in 0..<cols { x[i] = Float(i % 11) * 0.1 - 0.5 }
            matmul(x.pointer, rows: 1, w, out: y.pointer)
        }

        public func rate(calls: Int = 100, repeats: Int = 5) -> Double {
            var best = Double.infinity
            for _ in 0..<repeats {
                let t0 = monotonicSeconds()
                for _ in 0..<calls { matmul(x.pointer, rows: 1, w, out: y.pointer) }
                best = min(best, monotonicSeconds() - t0)
            }
            return Double(calls * w.byteCount) / best
        }
    }

    /// A measured round between two read-bandwidth samples (bytes/s), with its rate (units/s).
    public struct SampledRound: Sendable {
        public var rate: Double
        public var before: Double
        public var after: Double
        public init(rate: Double, before: Double, after: Double) { self.rate = rate; self.before = before; self.after = after }
        /// The limit the round is compared with: the better of its two samples, so a slow sample never flatters it.
        public var bandwidth: Double { max(before, after) }
        /// The samples agree within `tolerance` of the better one: the bandwidth held still through the round, so
        /// the ratio of its rate to that bandwidth means what it says. (On a shared VM the bandwidth can move by 2×
        /// within seconds; a round between a fast and a slow sample may have run at either.)
        public func isSteady(tolerance: Double = 0.15) -> Bool { abs(before - after) <= tolerance * bandwidth }
    }

    /// The round to report: the fastest of the steady ones, or of all when none was steady (then the ratio is
    /// uncertain, and `steady` says so). nil for no rounds.
    public static func reportedRound(_ rounds: [SampledRound], tolerance: Double = 0.15) -> (index: Int, steady: Bool)? {
        let steady = rounds.indices.filter { rounds[$0].isSteady(tolerance: tolerance) }
        let pool = steady.isEmpty ? Array(rounds.indices) : steady
        guard let best = pool.max(by: { rounds[$0].rate < rounds[$1].rate }) else { return nil }
        return (best, !steady.isEmpty)
    }

    /// f32 GEMM rate (FLOP/s) of OpenBLAS SGEMM on an n×n×n product over the pool, best of `repeats`: the prefill
    /// roofline.
    public static func gemmFlops(n: Int = 1024, repeats: Int = 4) -> Double {
        let x = FloatBuffer(count: n * n), w = FloatBuffer(count: n * n), y = FloatBuffer(count: n * n)
        for i in 0..<(n * n) { x[i] = Float(i % 7) * 0.1; w[i] = Float(i % 5) * 0.1 }
        let m = Matrix(w, rows: n, cols: n)
        var best = Double.infinity
        for _ in 0..<repeats {
            let t0 = monotonicSeconds()
            sgemmReference(x.pointer, rows: n, m, out: y.pointer)
            best = min(best, monotonicSeconds() - t0)
        }
        return 2 * Double(n * n * n) / best
    }
}
