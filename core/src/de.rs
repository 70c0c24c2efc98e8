//! Reading JSON inputs strictly with serde: objects where objects belong, and integers a
//! JSON client can mean.
//!
//! PLED's JSON inputs (request bodies, templates) are objects with named members. serde's
//! derived `Deserialize` also fills a struct from an array of its fields in order, and an
//! internally tagged enum from an array whose first element is the tag, so `["viewer", "ci"]`
//! would pass for `{"role": "viewer", "name": "ci"}`. Fields that hold such types name these
//! functions in `deserialize_with`, and an array there is a type error.

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `#[serde(deserialize_with = "pled_core::de::object")]` on a field that holds a struct or a
/// tagged enum: reads `T` only from a JSON object.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    T::deserialize(ObjectOnly(d))
}

/// [`object`] for each element of an array.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    struct Elements<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Elements<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(Object(v)) = seq.next_element()? {
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Elements(std::marker::PhantomData))
}

/// `#[serde(default, deserialize_with = "pled_core::de::exact_integer")]` for the integers of
/// request bodies: the API refuses integers beyond 2^53-1, which JSON parsers that read
/// numbers as doubles (JavaScript's) cannot hold exactly, so no client can mean one
/// (the same bound as ledger bodies, [`crate::MAX_SAFE_INTEGER`]).
pub fn exact_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<u64>::deserialize(d)? {
        Some(n) if n > crate::MAX_SAFE_INTEGER => {
            Err(serde::de::Error::custom(format!("{n} is beyond 2^53-1 (9007199254740991)")))
        }
        n => Ok(n),
    }
}

/// `T`, read by [`object`].
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d).map(Object)
    }
}

/// A deserializer that offers its input only as a map: a derived struct visitor, or an
/// internally tagged enum's, then meets an array as a type error instead of reading it.
struct ObjectOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    /// An externally tagged enum is already a string or a one-member object.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::Deserialize;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Point {
        x: u32,
        y: u32,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Shape {
        Dot { at: u32 },
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Op {
        Stop,
        #[serde(deserialize_with = "super::object")]
        Move(Point),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Drawing {
        #[serde(deserialize_with = "super::object")]
        origin: Point,
        #[serde(default, deserialize_with = "super::objects")]
        points: Vec<Point>,
        #[serde(deserialize_with = "super::object")]
        shape: Shape,
        #[serde(default, deserialize_with = "super::objects")]
        ops: Vec<Op>,
    }

    fn parse(s: &str) -> Result<Drawing, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn objects_are_read_and_arrays_refused_where_serde_would_read_them_by_position() {
        let d = parse(r#"{"origin":{"x":1,"y":2},"points":[{"x":3,"y":4}],"shape":{"kind":"dot","at":5}}"#).unwrap();
        assert_eq!(d.origin, Point { x: 1, y: 2 });
        assert_eq!(d.points, [Point { x: 3, y: 4 }]);
        assert_eq!(d.shape, Shape::Dot { at: 5 });
        let ops = r#"{"origin":{"x":1,"y":2},"shape":{"kind":"dot","at":5},"ops":["stop",{"move":{"x":1,"y":1}}]}"#;
        assert_eq!(parse(ops).unwrap().ops, [Op::Stop, Op::Move(Point { x: 1, y: 1 })]);
        assert_eq!(parse(r#"{"origin":{"x":1,"y":2},"shape":{"kind":"dot","at":5}}"#).unwrap().points, []);

        // Plain serde takes all three arrays; these fields do not.
        assert_eq!(serde_json::from_str::<Point>("[1,2]").unwrap(), Point { x: 1, y: 2 });
        assert_eq!(serde_json::from_str::<Shape>(r#"["dot",5]"#).unwrap(), Shape::Dot { at: 5 });
        let shape = r#""shape":{"kind":"dot","at":5}"#;
        for bad in [
            format!(r#"{{"origin":[1,2],{shape}}}"#),
            format!(r#"{{"origin":{{"x":1,"y":2}},"points":[{{"x":3,"y":4}},[5,6]],{shape}}}"#),
            r#"{"origin":{"x":1,"y":2},"shape":["dot",5]}"#.to_owned(),
            format!(r#"{{"origin":{{"x":1,"y":2}},{shape},"ops":[{{"move":[1,1]}}]}}"#),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.starts_with("invalid type: sequence"), "{bad}: {e}");
        }
        // Other wrong types still say what they are.
        assert!(
            parse(r#"{"origin":7,"shape":{"kind":"dot","at":5}}"#).unwrap_err().starts_with("invalid type: integer")
        );
        assert!(parse(r#"{"origin":{"x":1,"y":2},"points":{},"shape":{"kind":"dot","at":5}}"#).is_err());
    }
}
