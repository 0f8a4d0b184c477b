import Foundation

/// The `generate` prompt argument: the text itself, or "-" for standard input.
public enum PromptInput {
    public static func read(_ argument: String) throws -> String {
        guard argument == "-" else { return argument }
        let data = FileHandle.standardInput.readDataToEndOfFile()
        guard var text = String(data: data, encoding: .utf8) else {
            throw MoECtlError.usage("the prompt on standard input is not valid UTF-8")
        }
        // `echo ... | moectl generate -` adds a newline the user did not mean as part of the prompt.
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }
}
