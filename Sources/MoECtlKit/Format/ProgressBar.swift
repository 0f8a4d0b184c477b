/// `[#####-----] 25/50`: a fixed-width bar plus the exact counts.
public enum ProgressBar {
    public static func render(done: Int, total: Int, width: Int = 10) -> String {
        let total = max(total, 0)
        let done = min(max(done, 0), total)
        // Rounded down, so the bar is only full when every item is done. Double, not Int, arithmetic:
        // counts come from the server, and `done * width` must not be able to overflow and trap.
        let filled = total == 0 ? 0 : min(width, Int((Double(done) * Double(width) / Double(total)).rounded(.down)))
        return "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            + "] \(done)/\(total)"
    }
}
