import Foundation

/// Incremental detokenisation for streaming generation.
///
/// Invariant: the concatenation of everything returned by `push` plus
/// `finish()` equals `tokenizer.decode(allIds)`. Text is only released when
/// no later token can change it:
/// - a decode that ends in U+FFFD may be an incomplete UTF-8 character
///   (ByteLevel), so it is held until the next token;
/// - with a ByteFallback decoder, a trailing `<0xXX>` token is held because a
///   following invalid byte would turn the whole byte group into U+FFFDs.
///
/// Cost per token is O(window): only the ids since the previous release
/// (plus those of the release before, as left context) are re-decoded. The
/// context makes position-dependent decoders (Metaspace/Strip removing the
/// first space) behave as they do mid-sequence.
public struct StreamDecoder: Sendable {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    private let holdsByteTokens: Bool
    /// Context ids (already released) followed by pending ids.
    private var window: [Int] = []
    private var contextCount = 0
    /// decode(window[..<contextCount]) — the text the context renders alone.
    private var contextText = ""
    private var allIds: [Int] = []
    private var emittedUTF8 = 0
    /// Whether the last id that decode will actually see (not skipped, not
    /// unknown) is a byte token: skipped ids do not close a byte group.
    private var lastVisibleIsByte = false

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
        holdsByteTokens = tokenizer.decoder?.groupsByteTokens ?? false
    }

    /// Returns the text that became final with this id ("" if none yet).
    public mutating func push(_ id: Int) -> String {
        allIds.append(id)
        window.append(id)
        if id >= 0, id < tokenizer.isByteToken.count, tokenizer.tokenStrings[id] != nil,
           !(skipSpecialTokens && tokenizer.skippable[id]) {
            lastVisibleIsByte = tokenizer.isByteToken[id]
        }
        if holdsByteTokens && lastVisibleIsByte { return "" }
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
        emittedUTF8 += piece.utf8.count
        return piece
    }

    /// Returns whatever has not been released yet and resets the stream.
    public mutating func finish() -> String {
        // Decoding everything once makes the invariant hold even if a
        // windowed decode was ever inconsistent with the full one.
        let full = tokenizer.decode(allIds, skipSpecialTokens: skipSpecialTokens)
        let rest: String
        if full.utf8.count >= emittedUTF8 {
            rest = String(decoding: full.utf8.dropFirst(emittedUTF8), as: UTF8.self)
        } else {
            rest = ""
        }
        window = []
        contextCount = 0
        contextText = ""
        allIds = []
        emittedUTF8 = 0
        lastVisibleIsByte = false
        return rest
    }
}
