import Foundation

/// Finds a key given twice in one JSON object. `JSONSerialization` keeps the
/// last value of a repeated key, so `{"amount":"0.01","amount":"0.90"}`
/// reads as a refund of 0.90 while a proxy, a log or the merchant's own
/// code may read 0.01: the API refuses such a body instead of choosing.
enum JSONRepeatedKey {
    /// The path of the first key repeated within one object of `body`, as
    /// the API names fields (`payment_method.details.cvv`; an array's
    /// elements as `items[2].name`); `nil` when every object's keys differ.
    /// Two spellings of one key (`"amount"`, `"amo\u0075nt"`) are the same key.
    ///
    /// - Precondition: `body` is valid JSON (`JSONSerialization` read it);
    ///   on anything else the answer means nothing.
    /// - Complexity: O(n) in the body's bytes; no recursion, so nesting depth costs no stack.
    static func first(in body: Data) -> String? {
        body.withUnsafeBytes { raw in first(in: raw.bindMemory(to: UInt8.self)) }
    }

    /// An object or array being read; mutated in place, so that adding a
    /// key to its set does not copy the set.
    private struct Frame {
        var isObject: Bool
        /// An object's: what goes before each of its keys. An array's: its own path.
        var path: String
        var keys: Set<String> = []
        /// The key whose value is being read; `nil` where a key is due.
        var key: String?
        /// The element being read, in an array.
        var index = 0
    }

    private static func first(in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var stack: [Frame] = []
        var index = 0
        /// The path of a value that starts here.
        func valuePath() -> String {
            guard let top = stack.last else { return "" }
            return top.isObject ? top.path + (top.key ?? "") : "\(top.path)[\(top.index)]"
        }
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "{"):
                let path = valuePath()
                stack.append(Frame(isObject: true, path: path.isEmpty ? "" : path + "."))
                index += 1
            case UInt8(ascii: "["):
                stack.append(Frame(isObject: false, path: valuePath()))
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                stack.removeLast()
                index += 1
            case UInt8(ascii: ","):
                if !stack.isEmpty {
                    stack[stack.count - 1].key = nil
                    stack[stack.count - 1].index += 1
                }
                index += 1
            case UInt8(ascii: "\""):
                let start = index
                var escaped = false
                index += 1
                while index < bytes.count && bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\") {
                        escaped = true
                        index += 1
                    }
                    index += 1
                }
                index += 1
                // A key is due in an object that has read none since its last comma; any other string is a value.
                guard let top = stack.last, top.isObject, top.key == nil else { continue }
                let quoted = UnsafeBufferPointer(rebasing: bytes[start..<min(index, bytes.count)])
                let key = escaped ? ((try? JSONDecoder().decode(String.self, from: Data(quoted))) ?? "")
                                  : String(decoding: quoted.dropFirst().dropLast(), as: UTF8.self)
                guard stack[stack.count - 1].keys.insert(key).inserted else { return top.path + key }
                stack[stack.count - 1].key = key
            default:
                index += 1  // whitespace, a colon, or a number, true, false or null
            }
        }
        return nil
    }
}
