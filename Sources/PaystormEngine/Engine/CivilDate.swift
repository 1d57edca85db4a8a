/// Calendar arithmetic on engine time (Unix-epoch nanoseconds) without
/// Foundation's `Date` or the system time zone: card expiry is judged in UTC.
enum CivilDate {
    /// The UTC year and month of a Unix time in nanoseconds
    /// (Howard Hinnant's `civil_from_days`).
    static func yearMonth(unixNanoseconds: Int64) -> (year: Int, month: Int) {
        let seconds = unixNanoseconds >= 0 ? unixNanoseconds / 1_000_000_000 : (unixNanoseconds + 1) / 1_000_000_000 - 1
        let days = seconds >= 0 ? seconds / 86_400 : (seconds + 1) / 86_400 - 1
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month))
    }
}
