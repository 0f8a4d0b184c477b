import Foundation

/// Monotonic seconds, for timings.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Writes a line to standard error (logs never mix with the JSON or ids on standard output).
public func logLine(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
