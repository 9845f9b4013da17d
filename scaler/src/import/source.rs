//! Reading the source object: a JSON value with its path, so every note and error names the
//! field it is about (`spec.triggers[1].metadata.lagThreshold`).

use serde_json::Value;

/// A field of the source object and where it is.
#[derive(Clone)]
pub(super) struct Field<'a> {
    pub value: &'a Value,
    pub path: String,
}

/// `(field, problem)`: why the object cannot be imported.
pub(super) type Refusal = (String, String);

impl<'a> Field<'a> {
    pub fn root(value: &'a Value) -> Self {
        Self {
            value,
            path: String::new(),
        }
    }

    /// The child `key`.
    pub fn get(&self, key: &str) -> Field<'a> {
        Field {
            value: &self.value[key],
            path: if self.path.is_empty() {
                key.to_string()
            } else {
                format!("{}.{key}", self.path)
            },
        }
    }

    /// The array's items, each with its path (`spec.metrics[2]`).
    pub fn items(&self) -> Vec<Field<'a>> {
        self.value
            .as_array()
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, value)| Field {
                        value,
                        path: format!("{}[{i}]", self.path),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_set(&self) -> bool {
        !self.value.is_null()
    }

    /// A string value, or a number written as one (KEDA's metadata are strings, but YAML
    /// authors write `lagThreshold: 10`).
    pub fn text(&self) -> Option<String> {
        match self.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A required string, or a refusal naming the field.
    pub fn required_text(&self) -> Result<String, Refusal> {
        self.text()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.refuse("is required"))
    }

    /// A refusal naming this field.
    pub fn refuse(&self, problem: impl Into<String>) -> Refusal {
        (self.path.clone(), problem.into())
    }

    /// An integer (a number, or a string holding one, as KEDA's metadata), or a refusal.
    pub fn int(&self) -> Result<Option<i64>, Refusal> {
        match self.value {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.refuse(format!("{n} is not an integer"))),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| self.refuse(format!("{s:?} is not an integer"))),
            other => Err(self.refuse(format!("{other} is not an integer"))),
        }
    }

    /// An `i32` (replica counts, seconds), or a refusal.
    pub fn int32(&self) -> Result<Option<i32>, Refusal> {
        self.int()?
            .map(|v| i32::try_from(v).map_err(|_| self.refuse(format!("{v} is out of range"))))
            .transpose()
    }

    /// A boolean written as `true`/`false` or `"true"`/`"false"`.
    pub fn flag(&self) -> Result<bool, Refusal> {
        match self.value {
            Value::Null => Ok(false),
            Value::Bool(b) => Ok(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" | "" => Ok(false),
                _ => Err(self.refuse(format!("{s:?} is not true or false"))),
            },
            other => Err(self.refuse(format!("{other} is not true or false"))),
        }
    }

    /// The object's keys, none when unset.
    pub fn keys(&self) -> Vec<&'a str> {
        self.value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}
