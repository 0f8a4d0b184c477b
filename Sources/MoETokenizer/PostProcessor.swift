import Foundation

/// Post-processors for single sequences (pairs are not part of this API).
/// Only the id sequence matters: offsets/type ids are not exposed.
///
/// `process` is the `add_special_tokens=true` path. With
/// `add_special_tokens=false` every supported processor leaves the ids
/// unchanged (Template/Bert/Roberta add nothing, ByteLevel only trims
/// offsets), so the tokenizer skips the post-processor then.
enum PostProcessor: Sendable {
    /// TemplateProcessing `single`: each item is either the sequence or a
    /// special token's id list.
    case template([TemplateItem])
    /// ByteLevel and other processors that never add tokens.
    case passthrough
    case sequence([PostProcessor])

    enum TemplateItem: Sendable {
        case sequence
        case special([Int32])
    }

    static func parse(_ node: JSONNode) throws -> PostProcessor? {
        if node.isNull { return nil }
        let type = try node.typeTag()
        switch type {
        case "TemplateProcessing":
            let specials = node["special_tokens"]
            var items = [TemplateItem]()
            for item in try node["single"].requireArray() {
                if !item["Sequence"].isNull {
                    items.append(.sequence)
                } else if !item["SpecialToken"].isNull {
                    let name = try item["SpecialToken"]["id"].requireString()
                    let entry = specials[name]
                    guard let ids = entry["ids"].array?.compactMap({ ($0 as? NSNumber)?.intValue }) else {
                        throw TokenizerError("TemplateProcessing special token '\(name)' is not defined in tokenizer.json")
                    }
                    items.append(.special(ids.map { Int32($0) }))
                } else {
                    throw TokenizerError.invalid("TemplateProcessing item at '\(item.path)'")
                }
            }
            return .template(items)
        case "ByteLevel":
            return .passthrough
        case "BertProcessing", "RobertaProcessing":
            // Both store ["token", id] pairs and wrap as CLS A SEP.
            guard let cls = node["cls"].array, cls.count == 2, let clsId = (cls[1] as? NSNumber)?.intValue,
                  let sep = node["sep"].array, sep.count == 2, let sepId = (sep[1] as? NSNumber)?.intValue else {
                throw TokenizerError.invalid("\(type) post-processor")
            }
            return .template([.special([Int32(clsId)]), .sequence, .special([Int32(sepId)])])
        case "Sequence":
            return .sequence(try node["processors"].requireArray().compactMap { try parse($0) })
        default:
            throw TokenizerError.unsupported("post-processor", type)
        }
    }

    /// The ids with this processor's special tokens added.
    func process(_ ids: [Int32]) -> [Int32] {
        switch self {
        case .passthrough:
            return ids
        case .sequence(let steps):
            var r = ids
            for s in steps { r = s.process(r) }
            return r
        case .template(let items):
            var out = [Int32]()
            out.reserveCapacity(ids.count + items.count)
            for item in items {
                switch item {
                case .sequence: out.append(contentsOf: ids)
                case .special(let s): out.append(contentsOf: s)
                }
            }
            return out
        }
    }
}
