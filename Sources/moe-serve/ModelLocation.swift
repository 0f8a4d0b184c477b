import Foundation
import MoECore
import MoEModel

/// The model directory to use: the one given, or the bundled demo model (announced on stderr).
func resolveModel(_ given: String?, announce: Bool = true) throws -> String {
    if let g = given { return g }
    guard let d = BundledModels.path() else {
        throw CLIError("no --model given and the bundled demo model (Models/demo-mixtral) was not found; pass --model DIR")
    }
    if announce { logLine("using the bundled demo model: \(d)") }
    return d
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
