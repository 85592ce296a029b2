//! When schedules fire, in their timezone, and what becomes of ticks missed while the server
//! was down: pure functions of the times they are given, so tests inject the clock.

use crate::workflow::{Catchup, Schedule};
use chrono::{DateTime, Utc};

/// Most runs one catch-up starts for one schedule (`catchup = "all"`); older missed ticks are
/// recorded as missed.
pub(crate) const MAX_CATCHUP: usize = 10;

/// Most missed ticks recorded one by one after downtime; older ones are summed up.
pub(crate) const MAX_MISSED_RECORDED: usize = 100;

/// The first fire time strictly after `after`. DST is croner's: a wall time skipped at
/// spring-forward fires right after the gap, a wall time repeated at fall-back fires once.
pub(crate) fn next_fire(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = after.with_timezone(&schedule.timezone);
    schedule
        .parsed
        .find_next_occurrence(&local, false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Fire times in `(after, until]`, oldest first; the oldest are dropped beyond `limit` and
/// counted in the second value.
pub(crate) fn fires_between(
    schedule: &Schedule,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: usize,
) -> (Vec<DateTime<Utc>>, u64) {
    let mut fires = std::collections::VecDeque::new();
    let mut dropped = 0u64;
    let mut cursor = after;
    while let Some(next) = next_fire(schedule, cursor) {
        if next > until {
            break;
        }
        if fires.len() == limit {
            fires.pop_front();
            dropped += 1;
        }
        fires.push_back(next);
        cursor = next;
    }
    (fires.into(), dropped)
}

/// What happens to one tick missed while the server was down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Missed {
    /// Run it now (`catchup = "last"` for the last one, `"all"` for each, bounded).
    Run,
    /// Record it as missed, with the reason.
    Skip(String),
}

/// Decide the ticks missed between the last recorded tick and now.
pub(crate) fn catch_up(
    schedule: &Schedule,
    last_recorded: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, Missed)> {
    let (fires, dropped) = fires_between(schedule, last_recorded, now, MAX_MISSED_RECORDED);
    let count = fires.len();
    let mut out = Vec::with_capacity(count);
    for (i, fire) in fires.into_iter().enumerate() {
        let from_end = count - i; // 1 = the most recent
        let decision = match schedule.catchup {
            Catchup::None => {
                Missed::Skip("missed while the server was down (catchup = none)".into())
            }
            Catchup::Last if from_end == 1 => Missed::Run,
            Catchup::Last => Missed::Skip(
                "missed while the server was down; catchup = last runs only the latest".into(),
            ),
            Catchup::All if from_end <= MAX_CATCHUP => Missed::Run,
            Catchup::All => Missed::Skip(format!(
                "missed while the server was down; beyond the catch-up bound of {MAX_CATCHUP} runs"
            )),
        };
        out.push((fire, decision));
    }
    if dropped > 0
        && let Some((_, Missed::Skip(reason))) = out.first_mut()
    {
        reason.push_str(&format!(
            " ({dropped} earlier missed ticks not recorded one by one)"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Overlap;
    use chrono::TimeZone;
    use std::str::FromStr;

    fn schedule(cron: &str, tz: &str, catchup: Catchup) -> Schedule {
        Schedule {
            cron: cron.into(),
            parsed: croner::Cron::from_str(cron).unwrap(),
            timezone: tz.parse().unwrap(),
            overlap: Overlap::Skip,
            catchup,
            inputs: Default::default(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_wall_time_skipped_at_spring_forward_fires_once_right_after_the_gap() {
        // America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        let s = schedule("30 2 * * *", "America/New_York", Catchup::None);
        let (fires, _) = fires_between(
            &s,
            utc("2026-03-07T12:00:00Z"),
            utc("2026-03-09T12:00:00Z"),
            10,
        );
        let tz = s.timezone;
        let expected = vec![
            tz.with_ymd_and_hms(2026, 3, 8, 3, 0, 0)
                .unwrap()
                .with_timezone(&Utc),
            tz.with_ymd_and_hms(2026, 3, 9, 2, 30, 0)
                .unwrap()
                .with_timezone(&Utc),
        ];
        assert_eq!(fires, expected, "one fire on the day of the gap, none lost");
        assert_eq!(fires[0], utc("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn a_wall_time_repeated_at_fall_back_fires_once() {
        // America/New_York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let s = schedule("30 1 * * *", "America/New_York", Catchup::None);
        let (fires, _) = fires_between(
            &s,
            utc("2026-10-31T12:00:00Z"),
            utc("2026-11-02T12:00:00Z"),
            10,
        );
        assert_eq!(
            fires,
            vec![utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")],
            "the first 01:30 (EDT) only, no double fire"
        );
    }

    #[test]
    fn an_hourly_schedule_fires_every_real_hour_across_both_transitions() {
        let s = schedule("0 * * * *", "Europe/Lisbon", Catchup::None);
        // 2026-03-29 01:00 WET -> 02:00 WEST: a 23-hour local day.
        let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0).unwrap();
        let (fires, _) = fires_between(
            &s,
            day(29) - chrono::Duration::seconds(1),
            day(30) - chrono::Duration::seconds(1),
            100,
        );
        assert_eq!(fires.len(), 24, "every real hour of the UTC day: {fires:?}");
        let mut sorted = fires.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), fires.len(), "no duplicate");
        // 2026-10-25 02:00 WEST -> 01:00 WET: the repeated hour fires in both halves.
        let oct = |h: u32| Utc.with_ymd_and_hms(2026, 10, 25, h, 0, 0).unwrap();
        let (fires, _) = fires_between(&s, oct(0) - chrono::Duration::seconds(1), oct(2), 100);
        assert_eq!(
            fires,
            vec![oct(0), oct(1), oct(2)],
            "00:00 WEST, 01:00 WET, 02:00 WET"
        );
    }

    #[test]
    fn per_second_schedules_and_seconds_fields() {
        let s = schedule("*/2 * * * * *", "UTC", Catchup::None);
        let (fires, _) = fires_between(
            &s,
            utc("2026-01-01T00:00:00Z"),
            utc("2026-01-01T00:00:10Z"),
            100,
        );
        assert_eq!(fires.len(), 5);
        assert_eq!(fires[0], utc("2026-01-01T00:00:02Z"));
    }

    #[test]
    fn catch_up_policies_decide_each_missed_tick() {
        let from = utc("2026-01-01T00:00:00Z");
        let now = utc("2026-01-01T00:00:03.500Z");
        let decisions = |c| {
            catch_up(&schedule("* * * * * *", "UTC", c), from, now)
                .into_iter()
                .map(|(_, d)| d == Missed::Run)
                .collect::<Vec<_>>()
        };
        assert_eq!(decisions(Catchup::None), vec![false, false, false]);
        assert_eq!(decisions(Catchup::Last), vec![false, false, true]);
        assert_eq!(decisions(Catchup::All), vec![true, true, true]);
        // A long outage: bounded runs, bounded records, the rest counted.
        let long = catch_up(
            &schedule("* * * * * *", "UTC", Catchup::All),
            from,
            from + chrono::Duration::seconds(500),
        );
        assert_eq!(long.len(), MAX_MISSED_RECORDED);
        assert_eq!(
            long.iter().filter(|(_, d)| *d == Missed::Run).count(),
            MAX_CATCHUP
        );
        let Missed::Skip(first) = &long[0].1 else {
            panic!("oldest is skipped")
        };
        assert!(first.contains("400 earlier missed ticks"), "{first}");
    }
}
