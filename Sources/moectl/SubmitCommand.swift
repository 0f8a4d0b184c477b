import ArgumentParser
import MoECtlKit

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit a JSON-lines prompt file as a batch job and print the job id.",
        discussion: """
            Each non-blank line is a JSON string (the prompt) or an object such as \
            {"prompt": "...", "max_tokens": 32}; per-prompt max_tokens, temperature, top_p, top_k, seed \
            and stop override the flags.

            Only the job id goes to stdout. With --wait, progress goes to stderr and the exit status is \
            0 when the job completed, 4 when it failed or was cancelled.
            """)

    @Argument(help: "JSON-lines prompt file ('-' reads standard input).")
    var file: String

    @Option(help: "Maximum tokens per prompt, unless a prompt sets its own.")
    var maxTokens: Int = 128

    @OptionGroup var sampling: SamplingOptions

    @Flag(help: "Poll until the job ends, showing progress on stderr.")
    var wait = false

    @Option(help: ArgumentHelp("Seconds between polls with --wait.", valueName: "SECONDS"))
    var pollInterval: Double = 1

    @Flag(help: "Print the job object as JSON instead of the id (with --wait: the final job object).")
    var json = false

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        try SamplingOptions.check(sampling.parameters(maxTokens: maxTokens))
        guard pollInterval > 0, pollInterval <= 3600 else {
            throw ValidationError("--poll-interval must be more than 0 and at most 3600 seconds")
        }
    }

    func run() async throws {
        let action = SubmitAction(path: file, sampling: try sampling.parameters(maxTokens: maxTokens), wait: wait,
                                  json: json, pollInterval: pollInterval)
        try await execute(connection) { client, console in try await action.run(client: client, console: console) }
    }
}
