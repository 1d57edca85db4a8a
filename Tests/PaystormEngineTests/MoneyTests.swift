import Testing
@testable import PaystormEngine

@Suite("Money")
struct MoneyTests {
    @Test func parsesExactlyForEveryExponent() throws {
        #expect(try Money.parse("10.50", currency: .usd).minorUnits == 1050)
        #expect(try Money.parse("10.5", currency: .usd).minorUnits == 1050)
        #expect(try Money.parse("10", currency: .usd).minorUnits == 1000)
        #expect(try Money.parse("0.01", currency: .usd).minorUnits == 1)
        #expect(try Money.parse("1000", currency: .jpy).minorUnits == 1000)
        #expect(try Money.parse("1.234", currency: .kwd).minorUnits == 1234)
        #expect(try Money.parse("0.001", currency: .kwd).minorUnits == 1)
        #expect(try Money.parse("1000000000", currency: .usd).minorUnits == 100_000_000_000)
    }

    @Test func rejectsWhatIsNotAnExactPositiveAmount() {
        #expect(throws: MoneyError.tooManyDecimals("10.505", currency: .usd)) { try Money.parse("10.505", currency: .usd) }
        #expect(throws: MoneyError.tooManyDecimals("1.5", currency: .jpy)) { try Money.parse("1.5", currency: .jpy) }
        #expect(throws: MoneyError.notPositive("0")) { try Money.parse("0", currency: .usd) }
        #expect(throws: MoneyError.notPositive("0.00")) { try Money.parse("0.00", currency: .usd) }
        #expect(throws: MoneyError.notPositive("-5")) { try Money.parse("-5", currency: .usd) }
        #expect(throws: MoneyError.tooLarge("1000000000.01", currency: .usd)) { try Money.parse("1000000000.01", currency: .usd) }
        #expect(throws: MoneyError.tooLarge("99999999999999999999", currency: .usd)) { try Money.parse("99999999999999999999", currency: .usd) }
        for bad in ["", "1e3", " 10", "10 ", "1,000", "1.2.3", ".5", "5.", "+5", "١٠", "NaN", "0x10"] {
            #expect(throws: MoneyError.self, "\(bad)") { try Money.parse(bad, currency: .usd) }
        }
    }

    @Test func errorMessagesNameTheInput() {
        #expect(MoneyError.tooManyDecimals("10.505", currency: .usd).description == "amount \"10.505\" has more than 2 decimals, the most USD allows")
        #expect(MoneyError.notPositive("0").description == "amount \"0\" must be greater than zero")
    }

    @Test("format and parse round-trip", arguments: ["USD", "JPY", "KWD"])
    func roundTrip(code: String) throws {
        let currency = try #require(Currency(code: code))
        let largest = Money.maximumMajorUnits * currency.minorUnitsPerMajor
        var value: Int64 = 1
        while value < largest {
            for amount in [value, value + 7, value * 3 + 1, largest] where amount <= largest {
                let money = Money(minorUnits: amount, currency: currency)
                #expect(try Money.parse(money.decimalString, currency: currency) == money, "\(money)")
            }
            value *= 10
        }
        #expect(Money(minorUnits: 1050, currency: .usd).decimalString == "10.50")
        #expect(Money(minorUnits: 1, currency: .kwd).decimalString == "0.001")
        #expect(Money(minorUnits: 1000, currency: .jpy).decimalString == "1000")
    }

    @Test func currencyTable() {
        #expect(Currency(code: "USD")?.exponent == 2)
        #expect(Currency(code: "JPY")?.exponent == 0)
        #expect(Currency(code: "BHD")?.exponent == 3)
        #expect(Currency(code: "usd") == nil)
        #expect(Currency(code: "XXX") == nil)
        // The Kelvin sign is canonically equivalent to "K": only ASCII bytes name a currency.
        #expect(Currency(code: "\u{212A}WD") == nil)
        #expect(Currency(code: "\u{212A}RW") == nil)
        #expect(Currency(code: "KWD")?.code.utf8.count == 3)
        #expect(Currency.kwd.minorUnitsPerMajor == 1000)
    }
}
