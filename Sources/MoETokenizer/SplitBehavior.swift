import Foundation

/// How a split pattern's matches become pieces (Rust `SplitDelimiterBehavior`).
enum SplitBehavior: Sendable {
    case removed, isolated, mergedWithPrevious, mergedWithNext, contiguous

    init(json: String) throws {
        switch json {
        case "Removed": self = .removed
        case "Isolated": self = .isolated
        case "MergedWithPrevious": self = .mergedWithPrevious
        case "MergedWithNext": self = .mergedWithNext
        case "Contiguous": self = .contiguous
        default: throw TokenizerError.unsupported("split behavior", json)
        }
    }

    /// Splits `span` given the (sorted, non-overlapping) `matches` inside it,
    /// appending the resulting non-empty pieces to `out`. Mirrors
    /// `NormalizedString::split`: build the alternating match/non-match
    /// cover, optionally invert it, fold by behavior, then drop removed and
    /// empty pieces. Returns whether the first emitted piece starts at
    /// `span.start` (needed to track Metaspace's "first" prepend scheme).
    @discardableResult
    func split(_ span: Span, matches: [Span], invert: Bool, into out: inout [Span]) -> Bool {
        var pieces = [(Span, Bool)]()
        pieces.reserveCapacity(matches.count * 2 + 1)
        var prev = span.start
        for m in matches {
            if prev != m.start { pieces.append((Span(start: prev, end: m.start), false)) }
            pieces.append((m, true))
            prev = m.end
        }
        if prev != span.end { pieces.append((Span(start: prev, end: span.end), false)) }
        if invert { pieces = pieces.map { ($0.0, !$0.1) } }

        // (piece, remove)
        var folded = [(Span, Bool)]()
        folded.reserveCapacity(pieces.count)
        switch self {
        case .isolated:
            folded = pieces.map { ($0.0, false) }
        case .removed:
            folded = pieces
        case .contiguous:
            var prevMatch = false
            for (s, isMatch) in pieces {
                if isMatch == prevMatch, !folded.isEmpty {
                    folded[folded.count - 1].0.end = s.end
                } else {
                    folded.append((s, false))
                }
                prevMatch = isMatch
            }
        case .mergedWithPrevious:
            var prevMatch = false
            for (s, isMatch) in pieces {
                if isMatch && !prevMatch, !folded.isEmpty {
                    folded[folded.count - 1].0.end = s.end
                } else {
                    folded.append((s, false))
                }
                prevMatch = isMatch
            }
        case .mergedWithNext:
            var prevMatch = false
            for (s, isMatch) in pieces.reversed() {
                if isMatch && !prevMatch, !folded.isEmpty {
                    folded[folded.count - 1].0.start = s.start
                } else {
                    folded.append((s, false))
                }
                prevMatch = isMatch
            }
            folded.reverse()
        }
        var firstAtStart = false
        var emitted = false
        for (s, remove) in folded where !remove && s.end > s.start {
            if !emitted { firstAtStart = s.start == span.start; emitted = true }
            out.append(s)
        }
        return firstAtStart
    }
}
