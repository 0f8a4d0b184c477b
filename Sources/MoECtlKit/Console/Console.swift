import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where commands write. Writes go straight to the file descriptor (no stdio buffering), so each
/// streamed piece is visible the moment it is written, whether stdout is a terminal or a pipe.
public struct Console: Sendable {
    public var writeOut: @Sendable (String) -> Void
    public var writeErr: @Sendable (String) -> Void
    public var stderrIsTerminal: Bool

    public init(writeOut: @escaping @Sendable (String) -> Void, writeErr: @escaping @Sendable (String) -> Void,
                stderrIsTerminal: Bool) {
        self.writeOut = writeOut
        self.writeErr = writeErr
        self.stderrIsTerminal = stderrIsTerminal
    }

    public static func standard() -> Console {
        Console(writeOut: { writeAll($0, to: 1) }, writeErr: { writeAll($0, to: 2) },
                stderrIsTerminal: isatty(2) == 1)
    }

    public func out(_ text: String) { writeOut(text) }
    public func err(_ text: String) { writeErr(text) }
    public func outLine(_ text: String) { writeOut(text + "\n") }
    public func errLine(_ text: String) { writeErr(text + "\n") }
}

extension Console {
    /// Server JSON exactly as received, newline-terminated so the shell prompt starts on its own line.
    func outRaw(_ raw: Data) {
        let text = String(decoding: raw, as: UTF8.self)
        out(text.hasSuffix("\n") ? text : text + "\n")
    }
}

private func writeAll(_ text: String, to descriptor: Int32) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 {
            if errno == EINTR { continue }
            return  // a closed pipe: nothing sensible left to do with the text
        }
        bytes = bytes.dropFirst(written)
    }
}
