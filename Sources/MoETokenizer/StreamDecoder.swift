import Foundation

/// Incremental detokenisation for streaming generation, like HF's
/// `DecodeStream`.
///
/// Invariant: the concatenation of everything returned by `push` plus
/// `finish()` equals `tokenizer.decode(allIds)`. Text is only released when
/// no later token can change it:
/// - a decode that ends in U+FFFD may be an incomplete UTF-8 character
///   (ByteLevel), so it is held until the next token;
/// - with a ByteFallback decoder, a trailing `<0xXX>` token is held because a
///   following invalid byte would turn the whole byte group into U+FFFDs.
///
/// Memory and cost per token are O(window): the stream keeps only the ids
/// since the previous release (pending) plus those of the release before
/// (left context, HF's `prefix`), never the whole history. The context makes
/// position-dependent decoders (Metaspace/Strip removing the first space)
/// behave as they do mid-sequence. Ids that `decode` drops (unknown ids, and
/// special ids when skipping them) cannot change any decode, so they are not
/// kept at all.
public struct StreamDecoder: Sendable {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    private let holdsByteTokens: Bool
    /// Context ids (already released) followed by pending ids.
    private var window: [Int] = []
    private var contextCount = 0
    /// decode(window[..<contextCount]) — the text the context renders alone.
    private var contextText = ""

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
        holdsByteTokens = tokenizer.decoder?.groupsByteTokens ?? false
    }

    /// How many ids the stream currently holds (context plus pending).
    var retainedIdCount: Int { window.count }

    /// Returns the text that became final with this id ("" if none yet).
    public mutating func push(_ id: Int) -> String {
        guard id >= 0, id < tokenizer.tokenStrings.count, tokenizer.tokenStrings[id] != nil,
              !(skipSpecialTokens && tokenizer.skippable[id]) else {
            return ""  // decode ignores it: nothing changes
        }
        window.append(id)
        if holdsByteTokens && tokenizer.isByteToken[id] { return "" }
        let text = tokenizer.decode(window, skipSpecialTokens: skipSpecialTokens)
        guard text.utf8.count > contextText.utf8.count, !text.hasSuffix("\u{FFFD}"),
              text.utf8.starts(with: contextText.utf8) else {
            return ""
        }
        let piece = String(decoding: text.utf8.dropFirst(contextText.utf8.count), as: UTF8.self)
        // The ids just released become the left context of the next window.
        window.removeFirst(contextCount)
        contextCount = window.count
        contextText = tokenizer.decode(window, skipSpecialTokens: skipSpecialTokens)
        return piece
    }

    /// Returns whatever has not been released yet and resets the stream.
    public mutating func finish() -> String {
        let text = tokenizer.decode(window, skipSpecialTokens: skipSpecialTokens)
        let rest: String
        if text.utf8.starts(with: contextText.utf8) {
            rest = String(decoding: text.utf8.dropFirst(contextText.utf8.count), as: UTF8.self)
        } else {
            // Not reachable with the supported decoders (releases happen only
            // where the decode is prefix-stable); best effort: what follows
            // the common prefix.
            var a = text.unicodeScalars.makeIterator(), b = contextText.unicodeScalars.makeIterator()
            var common = 0
            while let x = a.next(), let y = b.next(), x == y { common += 1 }
            var v = String.UnicodeScalarView()
            v.append(contentsOf: text.unicodeScalars.dropFirst(common))
            rest = String(v)
        }
        window = []
        contextCount = 0
        contextText = ""
        return rest
    }
}
