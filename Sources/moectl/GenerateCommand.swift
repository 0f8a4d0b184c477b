import ArgumentParser
import MoECtlKit

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a completion for one prompt, streaming the text as it arrives.",
        discussion: "The text goes to stdout; a stats line (tokens, seconds, tok/s) goes to stderr.")

    @Argument(help: "The prompt text ('-' reads it from standard input).")
    var prompt: String

    @Option(help: "Maximum number of tokens to generate.")
    var maxTokens: Int = 64

    @OptionGroup var sampling: SamplingOptions

    @Flag(help: "Wait for the whole completion instead of streaming it.")
    var noStream = false

    @Flag(help: "Print the server's response object as JSON (implies --no-stream).")
    var json = false

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        try SamplingOptions.check(sampling.parameters(maxTokens: maxTokens))
    }

    func run() async throws {
        let parameters = try sampling.parameters(maxTokens: maxTokens)
        try await execute(connection) { client, console in
            let action = GenerateAction(prompt: try PromptInput.read(prompt), sampling: parameters,
                                        stream: !noStream, json: json)
            try await action.run(client: client, console: console)
        }
    }
}
