import DemoData
import ChangeEvents


enum RandomJSON {
    static let alphabet: [Character] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{01}", "é", "€", "😀", "\u{7F}", "."]

    static func string(_ random: inout SplitMix64) -> String {
        String((0..<Int.random(in: 0...8, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
    }

    static func scalar(_ random: inout SplitMix64) -> JSONValue {
        switch Int.random(in: 0..<6, using: &random) {
        case 0: .null
        case 1: .bool(Bool.random(using: &random))
        case 2: .integer(Int64.random(in: Int64.min...Int64.max, using: &random))
        case 3: .integer(Int64.random(in: -1000...1000, using: &random))
        case 4: .double(Double.random(in: -1e6...1e6, using: &random) * (Bool.random(using: &random) ? 1 : 1e-9))
        default: .string(string(&random))
        }
    }

    static func value(_ random: inout SplitMix64, depth: Int = 0) -> JSONValue {
        guard depth < 4 else { return scalar(&random) }
        switch Int.random(in: 0..<4, using: &random) {
        case 0: return .array((0..<Int.random(in: 0...4, using: &random)).map { _ in value(&random, depth: depth + 1) })
        case 1: return .object(row(&random, depth: depth + 1))
        default: return scalar(&random)
        }
    }

    static func row(_ random: inout SplitMix64, depth: Int = 1) -> [String: JSONValue] {
        var members: [String: JSONValue] = [:]
        for _ in 0..<Int.random(in: 0...4, using: &random) {
            members[string(&random)] = depth < 4 ? value(&random, depth: depth) : scalar(&random)
        }
        return members
    }
}
