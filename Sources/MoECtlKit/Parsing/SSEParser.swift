/// One server-sent event.
public struct SSEEvent: Equatable, Sendable {
    /// The `event:` field, "message" when absent (as in the HTML Living Standard).
    public var type: String
    /// All `data:` lines of the event joined with "\n".
    public var data: String
    public var id: String?

    public init(type: String = "message", data: String, id: String? = nil) {
        self.type = type
        self.data = data
        self.id = id
    }
}

/// Incremental `text/event-stream` parser (WHATWG "event stream interpretation").
///
/// Network reads split the stream anywhere: inside a line, between `\r` and `\n`, inside a multi-byte
/// UTF-8 character. The parser therefore keeps raw bytes until a line is complete and only decodes
/// whole lines. It knows nothing about `[DONE]`: that is the completions protocol, not SSE.
public struct SSEParser: Sendable {
    private var line: [UInt8] = []
    /// The previous chunk ended with `\r`: a `\n` at the start of the next one belongs to that line end.
    private var pendingCR = false
    private var sawFirstLine = false
    private var dataLines: [String] = []
    private var eventType = ""
    private var lastEventID: String?

    public init() {}

    /// Feeds the next bytes; returns the events they completed, in order.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [SSEEvent] where Bytes.Element == UInt8 {
        var events: [SSEEvent] = []
        for byte in bytes {
            if pendingCR {
                pendingCR = false
                if byte == UInt8(ascii: "\n") { continue }
            }
            switch byte {
            case UInt8(ascii: "\r"):
                pendingCR = true
                endLine(into: &events)
            case UInt8(ascii: "\n"):
                endLine(into: &events)
            default:
                line.append(byte)
            }
        }
        return events
    }

    /// Call at end of stream. The standard drops an event that no blank line terminated; this parser
    /// dispatches it instead, because a server that closes right after its last `data:` line has still
    /// said everything, and dropping a final `[DONE]` would make a complete answer look truncated.
    public mutating func finish() -> [SSEEvent] {
        var events: [SSEEvent] = []
        if !line.isEmpty { endLine(into: &events) }
        dispatch(into: &events)
        pendingCR = false
        return events
    }

    private mutating func endLine(into events: inout [SSEEvent]) {
        var bytes = line[...]
        line.removeAll(keepingCapacity: true)
        if !sawFirstLine {
            sawFirstLine = true
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        }
        if bytes.isEmpty {
            dispatch(into: &events)
            return
        }
        if bytes.first == UInt8(ascii: ":") { return }  // comment, e.g. a keep-alive

        let field: String
        let value: String
        if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
            field = String(decoding: bytes[..<colon], as: UTF8.self)
            var rest = bytes[bytes.index(after: colon)...]
            if rest.first == UInt8(ascii: " ") { rest = rest.dropFirst() }
            value = String(decoding: rest, as: UTF8.self)
        } else {
            field = String(decoding: bytes, as: UTF8.self)
            value = ""
        }
        switch field {
        case "data": dataLines.append(value)
        case "event": eventType = value
        case "id" where !value.contains("\0"): lastEventID = value
        default: break  // `retry` and unknown fields are ignored, as the standard says
        }
    }

    private mutating func dispatch(into events: inout [SSEEvent]) {
        defer {
            dataLines.removeAll()
            eventType = ""
        }
        guard !dataLines.isEmpty else { return }
        events.append(SSEEvent(type: eventType.isEmpty ? "message" : eventType,
                               data: dataLines.joined(separator: "\n"), id: lastEventID))
    }
}
