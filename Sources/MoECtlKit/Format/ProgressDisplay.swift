/// Decides what `--wait` writes to stderr for each poll. On a terminal the line is redrawn in place;
/// otherwise (a log file, CI) a line is written only when something changed, so logs stay short.
public struct ProgressDisplay: Sendable {
    public let isTerminal: Bool
    private var last: String?

    public init(isTerminal: Bool) { self.isTerminal = isTerminal }

    /// The text to write for `line`, or nil when nothing should be written.
    public mutating func update(_ line: String) -> String? {
        guard line != last else { return nil }
        last = line
        // "\r" goes back to the start of the line, ESC[K clears what a longer previous line left behind.
        return isTerminal ? "\r\(line)\u{1B}[K" : line + "\n"
    }

    /// Ends the redrawn line so later output starts on its own line.
    public func finish() -> String? {
        isTerminal && last != nil ? "\n" : nil
    }
}
