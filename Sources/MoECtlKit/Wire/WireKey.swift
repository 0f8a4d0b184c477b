/// A coding key spelled as a string literal, for wire types whose keys are written by hand
/// (several request types share the sampling fields, and the prompt-file reader must see every key).
public struct WireKey: CodingKey, Hashable, ExpressibleByStringLiteral, Sendable {
    public var stringValue: String
    public var intValue: Int? { nil }

    public init(_ name: String) { stringValue = name }
    public init(stringLiteral value: String) { stringValue = value }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { return nil }
}
